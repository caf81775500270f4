"""The local Qwen3-TTS adapter through the REAL qwen_tts loader and generate_* code, on tiny random
checkpoints built once per session (tests/tiny_qwen_tts.py). The tiny talker never emits EOS (see the
builder), so every real clip runs exactly to its max_new_tokens: lengths are deterministic. Guard paths that
need a model which stops early are driven by replacing the talker's generate() (below the package wrapper,
whose decode stays real) with a scripted one."""

from __future__ import annotations

import json
import sys
import threading
import time
import types
import warnings
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

import models.qwen_local_tts as qlt
from core.errors import ConfigError, InputError, UpstreamError
from core.languages import Language, get_language
from models.base import SpeechRequest
from models.qwen_local_tts import (
    RETRY_SEED_STEP,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    GenerationParams,
    LengthGuard,
    QwenLocalTTS,
    default_model_id,
    local_model_fingerprint,
    resolve_runtime,
    resolve_speaker,
    spell_out_numbers,
)
from tests.tiny_qwen_tts import build_tiny_qwen_tts

EN, JA, DE, ZH = (get_language(c) for c in ("en", "ja", "de", "zh"))
KLINGON = Language("tlh", "tlh", "Klingon", "tlh")
# Short ceilings keep the real (never-stopping) tiny model cheap: 0.4 s = 5 codec frames for short lines.
FAST = LengthGuard(
    min_ceiling_s=0.4, headroom=1.0, max_s_per_char=0.01, max_s_per_wide_char=0.02, min_s_per_char=0.0,
    min_s_per_wide_char=0.0,
)  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny matrices: OpenMP hand-offs between 2 busy cores cost ~10x the arithmetic. Restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_tiny_qwen_tts(tmp_path_factory.mktemp("tiny-qwen-tts"))


@pytest.fixture
def ref_wav(tmp_path: Path) -> Path:
    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    audio = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))
    path = tmp_path / "reference.wav"
    sf.write(path, audio.astype(np.float32), SAMPLE_RATE)
    return path


@pytest.fixture
def no_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any) -> Any:
        raise AssertionError("the model must not be loaded for this")

    monkeypatch.setattr(qlt, "_load", refuse)


def spy(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[dict[str, Any]]:
    """Wrap owner.name so every call's keyword arguments (and the torch seed in force) are recorded."""
    import torch

    original = getattr(owner, name)
    calls: list[dict[str, Any]] = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append({**kwargs, "_seed": torch.initial_seed()})
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return calls


class ScriptedTalker:
    """Stands in for Qwen3TTSForConditionalGeneration.generate (what the package wrapper calls): returns
    random codec frames of scripted lengths, one list of lengths per call. The wrapper still decodes them
    with the real speech tokenizer."""

    def __init__(self, *script: list[int], fail: Exception | None = None, delay_s: float = 0.0) -> None:
        self.script = list(script)
        self.fail = fail
        self.delay_s = delay_s
        self.calls: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    def __call__(
        self, *, input_ids: list[Any], max_new_tokens: int, **kwargs: Any
    ) -> tuple[list[Any], list[Any]]:
        import torch

        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.delay_s)
            if self.fail is not None:
                raise self.fail
            lengths = self.script[min(len(self.calls), len(self.script) - 1)]
            assert len(lengths) == len(input_ids)
            self.calls.append(
                {"batch": len(input_ids), "max_new_tokens": max_new_tokens, "seed": torch.initial_seed()}
            )
            g = torch.Generator().manual_seed(len(self.calls))
            codes = [torch.randint(0, 2048, (n, 16), generator=g) for n in lengths]
            return codes, [None] * len(codes)
        finally:
            self.in_flight -= 1


def scripted(monkeypatch: pytest.MonkeyPatch, tts: QwenLocalTTS, talker: ScriptedTalker) -> ScriptedTalker:
    monkeypatch.setattr(tts.load().model, "generate", talker)
    return talker


def assert_clip_audio(audio: np.ndarray) -> None:
    assert audio.dtype == np.float32 and audio.ndim == 1 and audio.size > 0
    assert np.all(np.isfinite(audio)) and float(np.max(np.abs(audio))) <= 1.0


# -- real loader, real generate ------------------------------------------------------------------------


def test_runaway_is_capped_at_the_ceiling_retried_with_new_seeds_then_flagged(
    tiny: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    tts = QwenLocalTTS(model=str(tiny["custom_voice"]), speaker="ono anna", guard=FAST)
    calls = spy(monkeypatch, tts.load(), "generate_custom_voice")
    clip = tts.synthesize("Hello world.", EN)

    assert clip.sample_rate == SAMPLE_RATE == 24_000
    assert_clip_audio(clip.audio)
    assert clip.audio.size == 5 * SAMPLES_PER_FRAME  # exactly the 0.4 s ceiling (5 frames of 80 ms)
    assert clip.extra["guard"] == "too_long" and clip.extra["guard_history"] == ["too_long"] * 3
    assert clip.attempts == clip.extra["attempts"] == 3 and clip.requests == 1 and clip.billed_characters == 0
    assert [c["_seed"] for c in calls] == [0, RETRY_SEED_STEP, 2 * RETRY_SEED_STEP]
    assert all(c["max_new_tokens"] == 6 and c["speaker"] == ["Ono_Anna"] for c in calls)
    assert all(c["text"] == ["Hello world."] and c["language"] == ["English"] for c in calls)


def test_a_batch_of_three_lines_is_one_generate_call(
    tiny: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A hard max_new_tokens below the guard's ceiling: clips end at 3 frames, which the guard accepts.
    tts = QwenLocalTTS(
        model=str(tiny["custom_voice"]), guard=FAST, generation=GenerationParams(max_new_tokens=4)
    )
    calls = spy(monkeypatch, tts.load(), "generate_custom_voice")
    texts = ["こんにちは。", "今日はいい天気ですね。", "さようなら！"]
    clips = tts.synthesize_batch(texts, JA)

    assert len(calls) == 1 and calls[0]["text"] == texts and calls[0]["language"] == ["Japanese"] * len(texts)
    assert len(clips) == 3
    for clip in clips:
        assert_clip_audio(clip.audio)
        assert clip.sample_rate == SAMPLE_RATE and clip.audio.size == 3 * SAMPLES_PER_FRAME
        assert "guard" not in clip.extra and clip.attempts == 1 and clip.extra["batch_size"] == 3


def test_each_line_of_a_batch_is_cut_at_its_own_ceiling(
    tiny: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = LengthGuard(min_ceiling_s=0.16, headroom=1.0, max_s_per_char=0.04, min_s_per_char=0.0)
    tts = QwenLocalTTS(model=str(tiny["custom_voice"]), guard=guard, retries=0)
    calls = spy(monkeypatch, tts.load(), "generate_custom_voice")
    short, long = tts.synthesize_batch(["Hi.", "Thirty characters of text here"], EN)

    # "Hi.": max(0.16 s, 3 * 0.04 s) = 2 frames; the other: 26 characters * 0.04 s = 1.04 s = 13 frames.
    assert len(calls) == 1 and calls[0]["max_new_tokens"] == 14  # the longer line's cap: 13 frames + 1
    assert short.audio.size == 2 * SAMPLES_PER_FRAME  # cut at its own 0.16 s although the call ran 13 frames
    assert long.audio.size == 13 * SAMPLES_PER_FRAME
    assert short.extra["guard"] == long.extra["guard"] == "too_long"
    assert short.attempts == long.attempts == 1


def test_voice_design_uses_the_description(tiny: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    tts = QwenLocalTTS(
        mode="voice_design",
        model=str(tiny["voice_design"]),
        description="  A calm, warm, female voice. ",
        guard=FAST,
        generation=GenerationParams(max_new_tokens=3),
    )
    calls = spy(monkeypatch, tts.load(), "generate_voice_design")
    clip = tts.synthesize("Guten Tag.", DE)
    assert_clip_audio(clip.audio)
    assert clip.audio.size == 2 * SAMPLES_PER_FRAME
    assert calls[0]["instruct"] == "A calm, warm, female voice." and calls[0]["language"] == ["German"]
    assert tts.identity()["description"] == "A calm, warm, female voice."


def test_clone_prompt_is_computed_once_reused_for_all_lines_and_read_back_from_disk(
    tiny: dict[str, Path], ref_wav: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    qwen_tts = qlt._import_qwen_tts()
    created = spy(monkeypatch, qwen_tts.Qwen3TTSModel, "create_voice_clone_prompt")
    monkeypatch.setattr(qlt, "_PROMPT_MEMO", {})
    cache = tmp_path / "prompts"
    options: dict[str, Any] = dict(
        mode="base", model=str(tiny["base"]), prompt_cache_dir=cache, guard=FAST,
        generation=GenerationParams(max_new_tokens=3),
    )  # fmt: skip

    first = QwenLocalTTS(**options)
    prompt = first.clone_prompt(ref_wav, "This is the reference.")
    first.voice_prompt = prompt
    generated = spy(monkeypatch, first.load(), "generate_voice_clone")
    clips = first.synthesize_batch(["One.", "Two.", "Three."], EN)
    assert len(clips) == 3 and all(c.audio.size == 2 * SAMPLES_PER_FRAME for c in clips)
    assert len(created) == 1 and created[0]["x_vector_only_mode"] is False
    assert len(generated) == 1 and generated[0]["voice_clone_prompt"] == [prompt.items[0]]
    assert list(cache.iterdir()) == [first._prompt_cache_file(prompt.id)]
    assert first.identity()["voice_prompt"] == prompt.id

    # "Another process": no in-memory memo, the model loaded afresh, the prompt named by its recording.
    monkeypatch.setattr(qlt, "_PROMPT_MEMO", {})
    qlt.load_model.cache_clear()
    second = QwenLocalTTS(**options, ref_audio=ref_wav, ref_text="This is the reference.")
    assert second.identity() == first.identity()  # known before anything is loaded
    clip = second.synthesize("Four.", EN)
    assert_clip_audio(clip.audio)
    assert len(created) == 1  # read from disk, not recomputed
    assert second.voice_prompt is not None and second.voice_prompt.id == prompt.id
    import torch

    a, b = prompt.items[0], second.voice_prompt.items[0]
    assert torch.equal(a.ref_code.cpu(), b.ref_code) and torch.equal(
        a.ref_spk_embedding.cpu(), b.ref_spk_embedding
    )

    # No reference text: speaker embedding only (x-vector mode), a different prompt.
    xvec = second.clone_prompt(ref_wav)
    assert xvec.id != prompt.id and xvec.x_vector_only and xvec.items[0].ref_code is None
    assert len(created) == 2 and created[1]["x_vector_only_mode"] is True

    # A damaged cache file is recomputed and rewritten, not trusted.
    damaged = second._prompt_cache_file(prompt.id)
    assert damaged is not None
    damaged.write_bytes(b"not a torch file")
    monkeypatch.setattr(qlt, "_PROMPT_MEMO", {})
    assert second.clone_prompt(ref_wav, "This is the reference.").id == prompt.id
    assert len(created) == 3 and damaged.stat().st_size > 100

    garbage = tmp_path / "garbage.wav"
    garbage.write_text("not audio")
    with (
        warnings.catch_warnings(),
        pytest.raises(InputError, match="cannot build a voice prompt from garbage.wav"),
    ):
        warnings.simplefilter("ignore")  # librosa's own fallback chatter about the undecodable file
        second.clone_prompt(garbage, "Hello.")


def test_languages_are_checked_before_and_after_loading(
    tiny: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    tts = QwenLocalTTS(model=str(tiny["custom_voice"]))
    with monkeypatch.context() as m:
        m.setattr(qlt, "_load", lambda *a: pytest.fail("loaded for an unsupported language"))
        with pytest.raises(ConfigError, match="does not speak Klingon"):
            tts.synthesize("nuqneH", KLINGON)
    # Past the pre-load table, the loaded model's get_supported_languages() is the judge.
    monkeypatch.setattr(QwenLocalTTS, "_languages_offered", lambda self: frozenset({"klingon"}))
    with pytest.raises(ConfigError, match="does not speak Klingon; it speaks Chinese, English"):
        tts.synthesize("nuqneH", KLINGON)


def test_close_frees_the_model_and_a_later_call_reloads(tiny: dict[str, Path]) -> None:
    import gc

    qlt.load_model.cache_clear()
    tts = QwenLocalTTS(model=str(tiny["custom_voice"]))
    ref = weakref.ref(tts.load())
    tts.close()
    gc.collect()
    assert ref() is None and qlt.load_model.cache_info().currsize == 0
    assert tts.load() is not None


# -- guards, driven by a scripted talker (real wrapper and real decoder) ------------------------------

GUARD = LengthGuard(min_ceiling_s=0.8, headroom=1.0, max_s_per_char=0.05, min_s_per_char=0.02)
TEXT = (
    "Twenty letters here."  # 18 characters: ceiling max(0.8, 0.9) s -> 12 frames; floor 0.36 s (4.5 frames)
)


def test_a_lost_ending_is_regenerated_with_a_new_seed(
    tiny: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    tts = QwenLocalTTS(model=str(tiny["custom_voice"]), guard=GUARD, seed=7)
    talker = scripted(monkeypatch, tts, ScriptedTalker([2], [8]))
    clip = tts.synthesize(TEXT, EN)
    assert (
        clip.attempts == 2
        and "guard" not in clip.extra
        and clip.extra["guard_history"] == ["too_short", "ok"]
    )
    assert clip.audio.size == 8 * SAMPLES_PER_FRAME and clip.extra["seed"] == 7 + RETRY_SEED_STEP
    assert [c["seed"] for c in talker.calls] == [7, 7 + RETRY_SEED_STEP]
    assert [c["max_new_tokens"] for c in talker.calls] == [13, 13]


def test_a_line_failing_every_attempt_is_kept_and_flagged(
    tiny: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    tts = QwenLocalTTS(model=str(tiny["custom_voice"]), guard=GUARD)
    scripted(monkeypatch, tts, ScriptedTalker([2], [3], [1]))
    clip = tts.synthesize(TEXT, EN)
    assert clip.extra["guard"] == "too_short" and clip.attempts == 3
    assert clip.audio.size == 3 * SAMPLES_PER_FRAME  # the longest of the short ones

    tts = QwenLocalTTS(model=str(tiny["custom_voice"]), guard=GUARD, retries=0)
    talker = scripted(monkeypatch, tts, ScriptedTalker([40]))  # even past max_new_tokens: cut anyway
    clip = tts.synthesize(TEXT, EN)
    assert clip.extra["guard"] == "too_long" and clip.attempts == 1 and len(talker.calls) == 1
    assert clip.audio.size == 12 * SAMPLES_PER_FRAME and abs(float(clip.audio[-1])) < 1e-6  # faded cut


def test_a_batch_retries_only_its_failing_lines(
    tiny: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    tts = QwenLocalTTS(model=str(tiny["custom_voice"]), guard=GUARD)
    talker = scripted(monkeypatch, tts, ScriptedTalker([8, 2, 12], [8, 9]))
    calls = spy(monkeypatch, tts.load(), "generate_custom_voice")
    texts = [TEXT, "Second line here...", "Third line of text."]
    clips = tts.synthesize_batch(texts, EN)
    assert [c["batch"] for c in talker.calls] == [3, 2]
    assert calls[1]["text"] == texts[1:]
    assert [c.attempts for c in clips] == [1, 2, 2] and all("guard" not in c.extra for c in clips)
    assert [c.audio.size // SAMPLES_PER_FRAME for c in clips] == [8, 8, 9]


def test_a_line_retried_by_a_later_run_gets_seeds_no_earlier_run_used(
    tiny: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SpeechRequest.earlier_tries (the clip cache's guard_tries): run n of a flagged line takes steps
    (n - 1) * (retries + 1) onwards of the seed sequence, in calls of its own; fresh lines keep run 1's."""
    tts = QwenLocalTTS(model=str(tiny["custom_voice"]), guard=GUARD, seed=7, retries=1)
    talker = scripted(monkeypatch, tts, ScriptedTalker([8], [2], [8]))
    fresh, retried = SpeechRequest(TEXT, EN), SpeechRequest("Second line here...", EN, earlier_tries=2)
    clips = tts.synthesize_requests([fresh, retried])
    # the fresh line passes in its call (seed 7); the retried one starts at step 2 * (1 + 1) = 4
    assert [(c["batch"], c["seed"]) for c in talker.calls] == [
        (1, 7), (1, 7 + 4 * RETRY_SEED_STEP), (1, 7 + 5 * RETRY_SEED_STEP)
    ]  # fmt: skip
    assert clips[0].extra["seed"] == 7 and clips[0].extra["earlier_tries"] == 0
    assert clips[1].extra["seed"] == 7 + 5 * RETRY_SEED_STEP and clips[1].extra["earlier_tries"] == 2
    assert clips[1].extra["guard_history"] == ["too_short", "ok"] and "guard" not in clips[1].extra
    assert tts.identity() == QwenLocalTTS(model=str(tiny["custom_voice"]), guard=GUARD, seed=7,
                                          retries=1).identity()  # fmt: skip
    with pytest.raises(ConfigError, match="earlier_tries"):
        tts.synthesize_requests([SpeechRequest(TEXT, EN, earlier_tries=-1)])


def test_engine_failures_become_project_errors(
    tiny: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    tts = QwenLocalTTS(model=str(tiny["custom_voice"]), guard=GUARD)
    scripted(
        monkeypatch, tts, ScriptedTalker(fail=RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    )
    with pytest.raises(UpstreamError, match="try smaller batches") as err:
        tts.synthesize(TEXT, EN)
    assert err.value.code == "LocalEngineError"
    with pytest.raises(ConfigError, match="empty text"):
        tts.synthesize("   ", EN)
    assert tts.synthesize_batch([], EN) == []


def test_concurrent_callers_are_serialised(tiny: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    tts = QwenLocalTTS(model=str(tiny["custom_voice"]), guard=GUARD)
    talker = scripted(monkeypatch, tts, ScriptedTalker([8], delay_s=0.05))
    threads = [threading.Thread(target=tts.synthesize, args=(TEXT, EN)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(talker.calls) == 3 and talker.max_in_flight == 1


# -- options, identity, runtime (nothing loaded) ------------------------------------------------------


def test_speakers_resolve_case_insensitively_and_unknown_ones_fail_early(no_loading: None) -> None:
    for name in ("Ono Anna", "ono_anna", "ONO-ANNA", " ono anna "):
        assert resolve_speaker(name) == "Ono_Anna"
    assert resolve_speaker("uncle fu") == "Uncle_Fu" and resolve_speaker("VIVIAN") == "Vivian"
    with pytest.raises(ConfigError, match=r"unknown Qwen3-TTS speaker 'Vivien'; did you mean Vivian\?"):
        QwenLocalTTS(speaker="Vivien")
    with pytest.raises(ConfigError, match=r"'ono'; did you mean Ono_Anna\?"):
        QwenLocalTTS(speaker="ono")
    with pytest.raises(
        ConfigError, match=r"'Cherry'; speakers: Vivian, Serena, Uncle_Fu, Dylan, Eric, Ryan, Aiden"
    ):
        QwenLocalTTS(speaker="Cherry")
    assert QwenLocalTTS(speaker="sohee").identity()["speaker"] == "Sohee"


def test_model_ids_sizes_and_local_folders(tiny: dict[str, Path], tmp_path: Path, no_loading: None) -> None:
    assert default_model_id("custom_voice") == "Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice"
    assert default_model_id("voice_design") == "Qwen/Qwen3-TTS-12Hz-1.7B-VoiceDesign"
    assert default_model_id("base") == "Qwen/Qwen3-TTS-12Hz-1.7B-Base"
    assert QwenLocalTTS(size="0.6B").model_ref == "Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice"
    assert QwenLocalTTS(mode="base", size="0.6B").identity()["model"] == "Qwen/Qwen3-TTS-12Hz-0.6B-Base"
    bad: list[tuple[dict[str, Any], str]] = [
        (dict(mode="voice_design", description="warm", size="0.6B"), "no 0.6B VoiceDesign"),
        (dict(mode="voice_design"), "non-empty voice description"),
        (dict(mode="voice_design", description="warm", instructions="happy"), "describe the voice"),
        (dict(size="2B"), "choose 1.7B or 0.6B"),
        (dict(mode="singing"), "unknown local TTS mode"),
        (dict(size="0.6B", instructions="Speak happily."), "need the 1.7B CustomVoice"),
        (dict(model="Qwen/Qwen3-TTS-12Hz-1.7B-Base"), "is a 'base' model"),
        (dict(model=str(tmp_path)), "no config.json"),
        (dict(model=str(tmp_path / "missing")), "does not exist"),
        (dict(model=str(tiny["base"])), "is a 'base' checkpoint, not 'custom_voice'; use mode 'base'"),
        (dict(ref_audio="x.wav"), "needs the base mode"),
        (dict(mode="base", ref_audio=tmp_path / "missing.wav"), "does not exist"),
    ]
    for options, message in bad:
        with pytest.raises((ConfigError, InputError), match=message):
            QwenLocalTTS(**options)
    with pytest.raises(ConfigError, match="give a reference recording"):
        QwenLocalTTS(mode="base", model=str(tiny["base"]))._ensure_prompt()


def test_identity_is_a_stable_cache_key(tiny: dict[str, Path], tmp_path: Path, no_loading: None) -> None:
    base = QwenLocalTTS(model=str(tiny["custom_voice"]))
    identity = base.identity()
    json.dumps(identity)  # serialisable as a cache key
    assert identity == QwenLocalTTS(model=str(tiny["custom_voice"])).identity()
    assert identity["route"] == "local" and identity["mode"] == "custom_voice"
    assert identity["model"].startswith("local:") and identity["speaker"] == "Vivian"
    assert identity["seed_policy"] == {"seed": 0, "retry_seed_step": RETRY_SEED_STEP}
    assert identity["generation"]["temperature"] == 0.9 and identity["guard"]["retries"] == 2
    assert "device" not in identity and "dtype" not in identity
    variants: list[dict[str, Any]] = [
        dict(speaker="Ryan"), dict(instructions="Whisper."), dict(seed=1), dict(seed=None), dict(retries=1),
        dict(generation=GenerationParams(temperature=0.7)), dict(guard=LengthGuard(headroom=2.0)),
        dict(normalize_numbers=False),
    ]  # fmt: skip
    for options in variants:
        assert QwenLocalTTS(model=str(tiny["custom_voice"]), **options).identity() != identity, options

    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"x" * 10)
    before = local_model_fingerprint(folder)
    assert local_model_fingerprint(folder) == before
    (folder / "model.safetensors").write_bytes(b"x" * 11)
    assert local_model_fingerprint(folder) != before


def test_runtime_follows_the_hardware_unless_overridden(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    import torch

    real_find_spec = importlib.util.find_spec
    has_flash = {"value": False}

    def find_spec(name: str, *args: Any) -> Any:
        if name == "flash_attn":
            return object() if has_flash["value"] else None
        return real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    has_flash["value"] = True
    assert resolve_runtime() == qlt.Runtime("cpu", "float32", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_runtime() == qlt.Runtime("cuda:0", "bfloat16", "flash_attention_2")
    has_flash["value"] = False
    assert resolve_runtime() == qlt.Runtime("cuda:0", "bfloat16", None)
    assert resolve_runtime("cpu", "float32", "eager") == qlt.Runtime("cpu", "float32", "eager")
    with pytest.raises(ConfigError, match="unknown torch dtype"):
        resolve_runtime(dtype="float99")


def test_length_guard_numbers() -> None:
    guard = LengthGuard()
    assert guard.ceiling_s("Oh!") == pytest.approx(4.5)  # the 3 s minimum, * 1.5
    latin = "a" * 100
    assert guard.ceiling_s(latin) == pytest.approx(15.0) and guard.floor_s(latin) == pytest.approx(3.0)
    assert guard.ceiling_s("a b c") == guard.ceiling_s("abc")  # spaces are free
    cjk = "東" * 20
    assert guard.ceiling_s(cjk) == pytest.approx(9.0) and guard.floor_s(cjk) == pytest.approx(1.6)
    assert guard.ceiling_frames(cjk) == 113  # ceil(9.0 * 12.5)
    assert guard.ceiling_s("안녕하세요" * 4) == guard.ceiling_s(cjk) == guard.ceiling_s("1" * 20)
    tts = QwenLocalTTS()
    assert tts._plan(0, cjk, JA, None).max_new_tokens == 114
    capped = QwenLocalTTS(generation=GenerationParams(max_new_tokens=50))
    assert capped._plan(0, cjk, JA, None).max_new_tokens == 50
    with pytest.raises(ConfigError):
        LengthGuard(headroom=0)


# -- numbers ------------------------------------------------------------------------------------------


def fake_num2words(fail_on: int | None = None) -> types.ModuleType:
    """Same call signature as num2words.num2words(number, lang=..., to=...)."""
    module = types.ModuleType("num2words")

    def num2words(number: Any, lang: str = "en", to: str = "cardinal") -> str:
        if number == fail_on:
            raise OverflowError("too big")
        return f"<{number}|{lang}|{to}>"

    module.num2words = num2words  # type: ignore[attr-defined]
    return module


def test_digits_stay_as_they_are_without_num2words(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "num2words", None)  # makes `import num2words` raise ImportError
    assert spell_out_numbers("It is 1999, and 3.5 km.", EN) == "It is 1999, and 3.5 km."
    assert qlt.number_normalization() == "none"
    assert QwenLocalTTS().identity()["numbers"] == "none"


def test_digits_are_spelled_out_in_the_target_language(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "num2words", fake_num2words(fail_on=10**30))
    assert spell_out_numbers("In 1999 we paid 1,000 for 3.14 kg, the 1st mp3.", EN) == (
        "In <1999|en|year> we paid <1000|en|cardinal> for <3.14|en|cardinal> kg, the 1st mp3."
    )
    assert spell_out_numbers("1999: 1.000 Leute, 3,5 Liter", DE) == (
        "<1999|de|year>: <1000|de|cardinal> Leute, <3.5|de|cardinal> Liter"
    )
    assert spell_out_numbers("2 000 euros", get_language("fr")) == "<2000|fr|cardinal> euros"
    assert spell_out_numbers("2024年3月", JA) == "<2024|ja|cardinal>年<3|ja|cardinal>月"
    assert spell_out_numbers("我有3个", ZH) == "我有3个"  # num2words has no Chinese
    assert spell_out_numbers(f"{10**30} stars", EN) == f"{10**30} stars"  # a converter error keeps digits
    assert QwenLocalTTS().identity()["numbers"].startswith("num2words")
    assert QwenLocalTTS(normalize_numbers=False).identity()["numbers"] == "off"


def test_the_model_receives_spelled_out_numbers(
    tiny: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "num2words", fake_num2words())
    tts = QwenLocalTTS(model=str(tiny["custom_voice"]), guard=GUARD)
    scripted(monkeypatch, tts, ScriptedTalker([8]))
    calls = spy(monkeypatch, tts.load(), "generate_custom_voice")
    tts.synthesize("Page  42.", EN)
    assert calls[0]["text"] == ["Page <42|en|cardinal>."]
