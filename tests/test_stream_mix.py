"""audio/stream_mix.py: loudness, placement and mixing chunk by chunk equal the whole-track reference
(audio.mix, audio.fit.place_clips) on clips that straddle chunk edges, hot enough for the limiter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio.fit import FitResult, place_clips
from audio.mix import PCM_CEILING_DBTP, integrated_loudness, render_mix, true_peak_db
from audio.stream_mix import (
    BackgroundReader,
    LoudnessMeter,
    PlacedClip,
    PlacedDub,
    TruePeakMeter,
    file_loudness,
    resample_clip,
    stream_mix,
)

RATE, CLIP_RATE = 48_000, 24_000
LSB_24 = 2.0**-23  # one least significant bit of 24-bit PCM


def clips_on_disk(tmp_path: Path, seconds: float, hot: bool) -> list[PlacedClip]:
    """Speech-like clips at 24 kHz, one every ~1.7 s (so many straddle 1 s chunk edges), some peaking
    over full scale so the limiter works."""
    rng = np.random.default_rng(3)
    clips, start = [], 0.3
    while start < seconds - 1.0:
        n = int(rng.uniform(0.6, 1.5) * CLIP_RATE)
        t = np.arange(n) / CLIP_RATE
        f0 = rng.uniform(110, 220)
        x = sum(np.cos(2 * np.pi * f0 * k * t) for k in range(1, 12)) * (
            0.6 - 0.4 * np.cos(2 * np.pi * 4 * t)
        )
        x = x / np.abs(x).max() * (1.6 if hot and rng.random() < 0.5 else 0.3)
        path = tmp_path / f"clip{len(clips)}.wav"
        sf.write(str(path), x.astype(np.float32), CLIP_RATE, subtype="FLOAT")
        clips.append(PlacedClip(str(path), round(start, 3)))
        start += rng.uniform(1.2, 2.2)
    return clips


def whole_dub(clips: list[PlacedClip], total: int) -> np.ndarray:
    fits = []
    for c in clips:
        audio, rate = sf.read(c.path, dtype="float32")
        audio = resample_clip(audio, rate, RATE)
        fits.append(FitResult(audio, c.start, audio.size / RATE, 1.0, 0.0, 0.0))
    return place_clips(fits, RATE, total)


def background_file(tmp_path: Path, total: int) -> Path:
    rng = np.random.default_rng(5)
    bg = (0.05 * rng.standard_normal((total, 2))).astype(np.float32)
    bg[: total // 3] *= 4  # a loud stretch, then a quieter one
    path = tmp_path / "background.wav"
    sf.write(str(path), bg, RATE, subtype="FLOAT")
    return path


def test_placement_by_ranges_equals_place_clips(tmp_path: Path) -> None:
    total = int(9.5 * RATE)
    clips = clips_on_disk(tmp_path, 9.5, hot=False)
    reference = whole_dub(clips, total)
    dub = PlacedDub(clips, RATE, total)
    edges = [0, 12_345, RATE, 2 * RATE + 7, 5 * RATE, total]
    got = np.concatenate([dub.read(a, b) for a, b in zip(edges, edges[1:], strict=False)])
    np.testing.assert_array_equal(got, reference)


def test_chunked_loudness_equals_the_whole_track(tmp_path: Path) -> None:
    path = background_file(tmp_path, int(7.3 * RATE))
    audio, _ = sf.read(str(path), dtype="float32", always_2d=True)
    whole = integrated_loudness(audio, RATE)
    assert file_loudness(path, chunk_s=0.77) == pytest.approx(whole, abs=1e-6)
    meter = LoudnessMeter(RATE)
    for a in range(0, audio.shape[0], 10_001):  # chunks that cut sub-blocks anywhere
        meter.add(audio[a : a + 10_001])
    assert meter.integrated() == pytest.approx(whole, abs=1e-6)
    import pyloudnorm

    assert meter.integrated() == pytest.approx(pyloudnorm.Meter(RATE).integrated_loudness(audio), abs=0.01)


def test_chunked_true_peak_equals_the_whole_track() -> None:
    rng = np.random.default_rng(9)
    x = np.clip(rng.standard_normal((50_000, 2)) * 0.3, -1, 1).astype(np.float32)
    meter = TruePeakMeter()
    for a in range(0, x.shape[0], 7_777):
        meter.add(x[a : a + 7_777])
    assert meter.dbtp() == pytest.approx(true_peak_db(x), abs=1e-6)


@pytest.mark.parametrize(("with_background", "duck_db"), [(False, 0.0), (True, 0.0), (True, 9.0)])
def test_chunked_mix_equals_the_whole_track_mix(
    tmp_path: Path, with_background: bool, duck_db: float
) -> None:
    seconds = 9.5
    total = int(seconds * RATE)
    clips = clips_on_disk(tmp_path, seconds, hot=True)
    dub_whole = whole_dub(clips, total)
    bg_path = background_file(tmp_path, total) if with_background else None
    bg_whole = sf.read(str(bg_path), dtype="float32", always_2d=True)[0] if bg_path else None
    reference = render_mix(
        dub_whole, bg_whole, RATE, 2, -16.0, ceiling_dbtp=PCM_CEILING_DBTP, duck_db=duck_db
    )
    assert true_peak_db(dub_whole) > 0.0  # the limiter has work on this dub

    chunks: list[np.ndarray] = []
    background = BackgroundReader(bg_path, total) if bg_path else None
    summary = stream_mix(
        PlacedDub(clips, RATE, total), background, RATE, 2, -16.0, chunks.append,
        ceiling_dbtp=PCM_CEILING_DBTP, duck_db=duck_db, chunk_s=1.0,
    )  # fmt: skip
    got = np.concatenate(chunks)
    assert got.shape == reference.audio.shape
    assert summary.out_channels == reference.audio.shape[1]
    assert np.max(np.abs(got - reference.audio)) <= LSB_24
    assert summary.gain_db == pytest.approx(reference.gain_db, abs=1e-9)
    assert summary.integrated_lufs == pytest.approx(reference.integrated_lufs, abs=0.01)
    assert summary.true_peak_dbtp == pytest.approx(reference.true_peak_dbtp, abs=0.01)
    assert summary.true_peak_dbtp <= PCM_CEILING_DBTP


def test_a_silent_background_mixes_as_none(tmp_path: Path) -> None:
    total = 3 * RATE
    clips = clips_on_disk(tmp_path, 3.0, hot=False)
    path = tmp_path / "silent.wav"
    sf.write(str(path), np.zeros((total, 2), np.float32), RATE, subtype="FLOAT")
    chunks: list[np.ndarray] = []
    summary = stream_mix(
        PlacedDub(clips, RATE, total), BackgroundReader(path, total), RATE, 2, -20.0, chunks.append
    )
    assert summary.out_channels == 1  # the encoder duplicates the channel
    assert summary.integrated_lufs == pytest.approx(-20.0, abs=0.1)


def assembly_peak_increase(seconds: float, work: Path) -> dict[str, float]:
    """Peak resident memory of one track's assembly above the memory just before it, in a fresh
    interpreter (the kernel's high-water mark, reset just before: exact)."""
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-m", "tests.assemble_memory_child", str(seconds), str(work)],
        cwd=root, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    figures["increase"] = figures["peak_after"] - figures["rss_before"]
    return figures


def test_assembly_memory_does_not_grow_with_duration(tmp_path: Path) -> None:
    """60 s and 300 s tracks (placement, ducked mix over a stereo stem, AAC from a pipe): the same peak.
    Held whole, the 300 s track's stereo float32 arrays alone would add 110 MB per copy."""
    mb = 1024 * 1024
    short = assembly_peak_increase(60.0, tmp_path / "short")
    long = assembly_peak_increase(300.0, tmp_path / "long")
    detail = f"60 s: +{short['increase'] / mb:.0f} MB, 300 s: +{long['increase'] / mb:.0f} MB"
    assert long["lines"] > 4 * short["lines"] > 0
    assert long["increase"] < short["increase"] + 16 * mb, detail
    assert (tmp_path / "long" / "dub.mka").is_file()
    assert long["lufs"] == pytest.approx(-20.0, abs=0.2)
