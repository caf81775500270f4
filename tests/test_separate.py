"""The separation stage with a tiny random HTDemucs loaded through demucs' real loader
(`get_model(name, repo=dir)`): stem layout, the exact two-stem identity against demucs' own
apply_model, chunked == one pass, memory that does not grow with duration, caching, errors, `none`."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from core.errors import ConfigError, InputError
from models.demucs_separator import (
    SHIFT_SEED,
    DemucsSeparator,
    Resampler,
    SegmentGrid,
    load_model,
    measure_separation,
    mixture_stats,
    plan_chunks,
    shift_origins,
)
from tasks.separate import Stems, check_separator, run_separation, separate
from tests.tiny_demucs import TINY_BAG, TINY_NAME, build_tiny_repo, write_test_wav

MB = 1 << 20
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on a loaded 2-core machine OpenMP's second thread mostly spins (a tiny
    model ran 5x slower with 2 threads there); results do not depend on it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_repo(tmp_path_factory.mktemp("demucs_repo"))


def tiny(repo: Path, **kwargs: Any) -> DemucsSeparator:
    kwargs.setdefault("device", "cpu")
    return DemucsSeparator(TINY_NAME, repo, **kwargs)


def run(sep: DemucsSeparator, audio: Path, out: Path, tag: str) -> tuple[np.ndarray, np.ndarray, int]:
    vocals, background = out / f"{tag}.vocals.wav", out / f"{tag}.background.wav"
    sep.separate(audio, vocals, background)
    v, rate = sf.read(str(vocals), dtype="float32", always_2d=True)
    b, rate_b = sf.read(str(background), dtype="float32", always_2d=True)
    assert rate == rate_b
    return v, b, rate


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    noise = float(((reference.astype(np.float64) - estimate) ** 2).sum())
    return (
        float("inf")
        if noise == 0
        else 10 * np.log10(float((reference.astype(np.float64) ** 2).sum()) / noise)
    )


# -- layout ------------------------------------------------------------------------------------------


def test_stereo_48k_stems_keep_rate_layout_and_length(tiny_repo: Path, tmp_path: Path) -> None:
    audio = write_test_wav(tmp_path / "in.wav", 10.0, 48000, 2)
    sep = tiny(tiny_repo, chunk_seconds=4.0)
    seen: list[tuple[float, float]] = []
    sep.separate(audio, tmp_path / "v.wav", tmp_path / "b.wav", progress=lambda d, t: seen.append((d, t)))
    for path in (tmp_path / "v.wav", tmp_path / "b.wav"):
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (48000, 2, 480000, "FLOAT")
        data, _ = sf.read(str(path), dtype="float32")
        assert np.isfinite(data).all() and float(np.abs(data).max()) > 1e-4
        assert float(np.abs(data[:, 0] - data[:, 1]).max()) > 1e-6  # channels are not collapsed
    assert sep.last_run["chunks"] >= 3
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and seen[-1] == (10.0, 10.0)


def test_mono_input_is_duplicated_to_stereo_and_folded_back(tiny_repo: Path, tmp_path: Path) -> None:
    mono = write_test_wav(tmp_path / "mono.wav", 5.0, 48000, 1, seed=2)
    data, rate = sf.read(str(mono), dtype="float32", always_2d=True)
    dual = tmp_path / "dual.wav"
    sf.write(str(dual), np.repeat(data, 2, axis=1), rate, subtype="FLOAT")
    sep = tiny(tiny_repo, chunk_seconds=3.0)
    v1, b1, rate1 = run(sep, mono, tmp_path, "mono")
    v2, b2, _ = run(sep, dual, tmp_path, "dual")
    assert rate1 == 48000 and v1.shape == b1.shape == (len(data), 1)
    # the model saw the mono track on both channels; the mono stems are the mean of its two outputs
    np.testing.assert_allclose(v1[:, 0], v2.mean(axis=1), atol=1e-6)
    np.testing.assert_allclose(b1[:, 0], b2.mean(axis=1), atol=1e-6)


# -- what the stems are ------------------------------------------------------------------------------


def test_stems_are_demucs_vocals_and_the_sum_of_the_other_sources(tiny_repo: Path, tmp_path: Path) -> None:
    """At the model's rate the stems equal demucs' own apply_model (shifts=1, same random offset)
    run on the whole track: vocals, and drums+bass+other; together, the model's total."""
    import torch
    from demucs.apply import apply_model

    audio = write_test_wav(tmp_path / "in.wav", 8.0, 44100, 2, seed=3)
    sep = tiny(tiny_repo, shifts=1, chunk_seconds=3.0)
    vocals, background, _ = run(sep, audio, tmp_path, "chunked")
    assert sep.last_run["chunks"] >= 2

    wav = torch.from_numpy(sf.read(str(audio), dtype="float32")[0].T.copy())
    ref = wav.mean(0)
    mean, std = ref.mean(), ref.std() + 1e-8
    model = load_model(sep.ref)
    assert model.sources == ["drums", "bass", "other", "vocals"]
    random.seed(SHIFT_SEED)  # apply_model draws its shift from the global `random`
    with torch.no_grad():
        out = (
            apply_model(model, ((wav - mean) / std)[None], shifts=1, split=True, overlap=0.25)[0] * std + mean
        )
    expected_vocals = out[3].T.numpy()
    expected_background = out[:3].sum(dim=0).T.numpy()
    scale = float(np.abs(expected_background).max())
    assert float(np.abs(vocals - expected_vocals).max()) < 1e-5 * scale
    assert float(np.abs(background - expected_background).max()) < 1e-5 * scale
    total = out.sum(dim=0).T.numpy()
    assert float(np.abs(vocals + background - total).max()) < 1e-5 * scale


def test_bag_of_models_loads_through_the_yaml_and_matches_its_model(tiny_repo: Path, tmp_path: Path) -> None:
    audio = write_test_wav(tmp_path / "in.wav", 3.0, 44100, 2, seed=4)
    bag = DemucsSeparator(TINY_BAG, tiny_repo, device="cpu", shifts=0)
    assert type(bag.load()).__name__ == "BagOfModels"
    v1, b1, _ = run(bag, audio, tmp_path, "bag")
    v2, b2, _ = run(tiny(tiny_repo, shifts=0), audio, tmp_path, "single")
    np.testing.assert_allclose(v1, v2, atol=1e-6)
    np.testing.assert_allclose(b1, b2, atol=1e-6)
    assert bag.identity()["weights"] != tiny(tiny_repo).identity()["weights"]  # the yaml is hashed too


# -- chunking ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "channels", "seconds", "shifts", "chunk_seconds"),
    [(48000, 2, 16.0, 1, 3.0), (16000, 1, 7.0, 2, 2.0)],
)
def test_chunked_equals_one_pass(
    tiny_repo: Path,
    tmp_path: Path,
    rate: int,
    channels: int,
    seconds: float,
    shifts: int,
    chunk_seconds: float,
) -> None:
    audio = write_test_wav(tmp_path / "in.wav", seconds, rate, channels, seed=5)
    one = tiny(tiny_repo, shifts=shifts, chunk_seconds=float("inf"))
    v1, b1, _ = run(one, audio, tmp_path, "one")
    chunked = tiny(tiny_repo, shifts=shifts, chunk_seconds=chunk_seconds)
    v2, b2, _ = run(chunked, audio, tmp_path, "chunked")
    assert one.last_run["chunks"] == 1 and chunked.last_run["chunks"] >= 3
    # chunk windows sit on demucs' segment grid: the same segments, inputs and blend as one pass
    for a, b in ((v1, v2), (b1, b2)):
        assert a.shape == b.shape
        assert snr_db(a, b) > 120, snr_db(a, b)
        assert float(np.abs(a - b).max()) < 1e-6


def test_chunk_plan_tiles_the_track_on_the_segment_grid() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        seg = int(rng.integers(2000, 9000))
        stride = max(1, int((1 - rng.uniform(0.0, 0.9)) * seg))
        src_rate, model_rate = [(48000, 44100), (16000, 44100), (44100, 44100), (22050, 44100)][
            rng.integers(4)
        ]
        n_src = int(rng.integers(1, 40 * seg))
        total = Resampler(src_rate, model_rate).output_length(n_src)
        grid = SegmentGrid(seg, stride, total)
        origins = shift_origins(int(rng.integers(0, 3)), 8000)
        chunks = plan_chunks(n_src, src_rate, model_rate, grid, origins, float(rng.uniform(0.05, 1.0)))
        assert chunks[0].src_lo == 0 and chunks[-1].src_hi == n_src
        assert all(a.src_hi == b.src_lo for a, b in zip(chunks, chunks[1:], strict=False))
        for c in chunks:
            assert 0 <= c.need_lo < c.need_hi <= total
            for origin, (start, end) in zip(origins, c.windows, strict=True):
                assert (start - origin) % stride == 0 and start >= origin
                assert start <= c.need_lo and c.need_hi <= end <= total
                # no segment more than needed, except to reach audio a track-end segment pads with
                assert start == origin or start > c.need_lo - seg or end == total


def rss_increase_in_a_fresh_process(repo: Path, chunk_seconds: float, audio: Path, out: Path) -> int:
    """Peak resident memory of one separation above the memory just before it, in a fresh interpreter:
    measured in this process, heap freed by earlier runs hides new allocations and a sampling thread
    starved by a loaded machine misses short peaks (a CI run saw both: one pass only 18 MB above
    chunked)."""
    proc = subprocess.run(
        [sys.executable, "-m", "tests.separation_memory_child", str(repo), str(chunk_seconds), str(audio),
         str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    return int(figures["peak_after"]) - int(figures["rss_before"])


def test_memory_does_not_grow_with_duration(tiny_repo: Path, tmp_path: Path) -> None:
    """Resident memory (whole process, the kernel's high-water mark, each run in a fresh interpreter)
    and numpy allocations (tracemalloc, exact) of 8 s and 32 s inputs; one pass over the 32 s input
    shows what growing with duration looks like."""
    warm = write_test_wav(tmp_path / "warm.wav", 3.0, 48000, 2, seed=6)
    short = write_test_wav(tmp_path / "short.wav", 8.0, 48000, 2, seed=6)
    long = write_test_wav(tmp_path / "long.wav", 32.0, 48000, 2, seed=7)
    measure_separation(tiny(tiny_repo, chunk_seconds=3.0), warm, tmp_path / "w")  # first-call allocations
    runs = {
        "8 s chunked": measure_separation(tiny(tiny_repo, chunk_seconds=3.0), short, tmp_path / "s", True),
        "32 s chunked": measure_separation(tiny(tiny_repo, chunk_seconds=3.0), long, tmp_path / "l", True),
        "32 s one pass": measure_separation(
            tiny(tiny_repo, chunk_seconds=float("inf")), long, tmp_path / "o", True
        ),
    }
    traced = {k: m.traced_peak_bytes or 0 for k, m in runs.items()}
    rss = {
        "8 s chunked": rss_increase_in_a_fresh_process(tiny_repo, 3.0, short, tmp_path / "rs"),
        "32 s chunked": rss_increase_in_a_fresh_process(tiny_repo, 3.0, long, tmp_path / "rl"),
        "32 s one pass": rss_increase_in_a_fresh_process(tiny_repo, float("inf"), long, tmp_path / "ro"),
    }
    detail = ", ".join(f"{k}: RSS +{rss[k] / MB:.0f} MB, numpy {traced[k] / MB:.1f} MB" for k in runs)
    # numpy buffers: exactly bounded by the chunk (one 32 s stem held whole would add 12 MB)
    assert traced["32 s chunked"] < 1.1 * traced["8 s chunked"] + 1 * MB, detail
    assert traced["32 s one pass"] > 3 * traced["32 s chunked"], detail
    # the process as a whole: mostly the model's per-segment working memory, the same for any input
    assert rss["8 s chunked"] > 0, detail
    assert rss["32 s chunked"] < 1.3 * rss["8 s chunked"], detail
    # one pass holds at least apply_model's 45 MB output tensor for the whole 32 s on top
    assert rss["32 s one pass"] > rss["32 s chunked"] + 24 * MB, detail
    assert 0 < runs["32 s chunked"].rtf < 10 and runs["32 s chunked"].audio_seconds == pytest.approx(32.0)


def test_mixture_stats_match_the_whole_track(tmp_path: Path) -> None:
    audio = write_test_wav(tmp_path / "in.wav", 3.0, 22050, 2, seed=8)
    data, _ = sf.read(str(audio), dtype="float64")
    mean, std = mixture_stats(audio, block_frames=10_000)
    assert mean == pytest.approx(data.mean(axis=1).mean(), abs=1e-12)
    assert std == pytest.approx(data.mean(axis=1).std(ddof=1), rel=1e-9)


# -- the stage: cache, atomic outputs, none ----------------------------------------------------------


class FakeProgress:
    instances: list[FakeProgress] = []

    def __init__(self, stage: str, total: float, unit: str = "items") -> None:
        self.stage, self.total, self.unit = stage, total, unit
        self.values: list[float] = []
        FakeProgress.instances.append(self)

    def set(self, done: float, total: float | None = None) -> None:
        self.values.append(done)


def test_rerun_is_served_from_cache_without_running_the_model(
    tiny_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tasks.separate as stage

    monkeypatch.setattr(stage, "StageProgress", FakeProgress)  # StageProgress outside a flow starts a server
    FakeProgress.instances.clear()
    (tmp_path / "work").mkdir()
    audio = write_test_wav(tmp_path / "work" / "audio.wav", 3.0, 48000, 2, seed=9)
    options: dict[str, Any] = {"model": TINY_NAME, "model_dir": tiny_repo, "device": "cpu"}
    options["chunk_seconds"] = 2.0
    calls = []
    model = load_model(tiny(tiny_repo).ref)
    hook = model.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        first = separate.fn(audio, "audio-key", "htdemucs", **options)
        n_first = len(calls)
        mtime = first.vocals.stat().st_mtime_ns
        second = separate.fn(audio, "audio-key", "htdemucs", **options)
        assert n_first > 0 and len(calls) == n_first  # the model was not invoked again
        assert second == first and first.vocals.stat().st_mtime_ns == mtime
        assert first.vocals == tmp_path / "work" / "vocals.wav"
        assert first.background == tmp_path / "work" / "background.wav"
        assert first.key != "audio-key"
        assert len(FakeProgress.instances) == 1 and FakeProgress.instances[0].values[-1] == pytest.approx(3.0)
        third = separate.fn(audio, "audio-key", "htdemucs", **{**options, "shifts": 2})
        assert len(calls) > n_first and third.key != first.key  # shifts are part of the key
        fourth = separate.fn(audio, "other-audio-key", "htdemucs", **{**options, "shifts": 2})
        assert fourth.key != third.key
    finally:
        hook.remove()
    assert not list((tmp_path / "work").glob(".tmp-*"))


class FailingSeparator:
    name = "failing"

    def identity(self) -> dict[str, Any]:
        return {"v": 1}

    def separate(
        self, audio_path: Path, vocals_path: Path, background_path: Path, progress: Any = None
    ) -> None:
        vocals_path.write_bytes(b"partial")
        raise RuntimeError("killed mid-way")


def test_a_failed_separation_leaves_no_output(tmp_path: Path) -> None:
    vocals, background = tmp_path / "vocals.wav", tmp_path / "background.wav"
    with pytest.raises(RuntimeError):
        run_separation(FailingSeparator(), tmp_path / "audio.wav", "k", vocals, background)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_none_keeps_the_original_audio_as_vocals(tmp_path: Path) -> None:
    audio = write_test_wav(tmp_path / "audio.wav", 0.5, 48000, 2)
    stems = separate.fn(audio, "audio-key", "none")
    assert stems == Stems(vocals=audio, background=None, key="audio-key")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio.wav"]
    check_separator("none")


# -- errors ------------------------------------------------------------------------------------------


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(exc.value)
    assert "\n" not in message and len(message) < 400, message
    return message


def test_model_errors_are_one_line(tiny_repo: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        check_separator("htdemucs", model="nope", model_dir=tiny_repo)
    assert one_line(exc) == f"demucs model 'nope' not found in {tiny_repo}"
    with pytest.raises(ConfigError) as exc:
        check_separator("htdemucs", model=TINY_NAME, model_dir=tmp_path / "missing")
    assert one_line(exc) == f"demucs model folder not found: {tmp_path / 'missing'}"
    with pytest.raises(ConfigError) as exc:
        check_separator("htdemucs", model="htdemucs_typo")
    assert one_line(exc).startswith("unknown demucs model 'htdemucs_typo' (known: ")
    assert "htdemucs_ft" in str(exc.value) and "mdx_extra" in str(exc.value)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "junk.th").write_bytes(b"not a torch file")
    (broken / "hollow.yaml").write_text("models: ['absent_sig']\n")
    for name in ("junk", "hollow"):
        with pytest.raises(ConfigError) as exc:
            check_separator("htdemucs", model=name, model_dir=broken, load=True)
        assert one_line(exc).startswith(f"demucs model '{name}' in {broken.resolve()} cannot be loaded")
    with pytest.raises(ConfigError) as exc:
        check_separator("spleeter")
    assert one_line(exc) == "unknown separator 'spleeter' (choose htdemucs or none)"
    for bad in ({"shifts": -1}, {"overlap": 1.0}, {"chunk_seconds": 0.0}, {"device": "tpu"}):
        with pytest.raises(ConfigError) as exc:
            check_separator("htdemucs", **bad)
        one_line(exc)
    check_separator("htdemucs", model=TINY_NAME, model_dir=tiny_repo, load=True)
    check_separator("htdemucs", model="htdemucs_ft")  # a known name passes without a download


def test_a_folder_holding_one_model_can_be_given_as_the_model(tiny_repo: Path, tmp_path: Path) -> None:
    single = tmp_path / "single"
    single.mkdir()
    (single / f"{TINY_NAME}.th").write_bytes((tiny_repo / f"{TINY_NAME}.th").read_bytes())
    sep = DemucsSeparator(str(single))
    assert (sep.ref.name, sep.ref.directory) == (TINY_NAME, single.resolve())
    with pytest.raises(ConfigError) as exc:
        DemucsSeparator(str(tiny_repo))
    assert "must hold exactly one model" in one_line(exc)


def test_offline_download_failure_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """demucs tries the HuggingFace hub, then its legacy URL through torch.hub: make both fail fast
    and for sure (hub offline mode, a closed local port), with an empty torch cache."""
    import demucs.pretrained
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(demucs.pretrained, "ROOT_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(InputError) as exc:
        check_separator("htdemucs", model="htdemucs", load=True)
    assert one_line(exc).startswith("could not download demucs model 'htdemucs' (offline?)")
    assert capfd.readouterr() == ("", "")  # no retry warnings or "Downloading:" lines around the error
