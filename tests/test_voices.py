"""A voice per line: the single --voice is the cast "everyone -> X", --cast gives speakers their own voice,
a line of segments.json may name its own; the clip cache keys of one-voice jobs are those of earlier
versions (pinned below), so users' caches stay valid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.config import build_config
from core.errors import ConfigError
from tests.loopback_dashscope import LoopbackDashScope

# Computed with the code before lines carried voices (commit 75b9378: make_synthesizer(config).identity()
# and tasks.translate.translation_key), for the text below in Japanese: a change here re-bills every
# user's cached clips.
TEXT = "こんにちは、世界。"
PINNED_CLIP_KEYS = {
    ("api", "Cherry"): "ca5e3ee237d21c24bc48ac91e860903f1cd376a01d4abb88af30a3d02ece9f05",
    ("api", "ethan"): "6af486b6de43dc9dde388b00b33a0bc4809b78331911a6637f7798a830dfd745",
    ("local", "Vivian"): "49b51393a1244193f8be6a081a355df66ced6fcd75a25d9c8d090ab95e92254e",
    ("local", "ono anna"): "6e59fb41387d8214b21e06ba90f04ca8761b48212d22760d60fc8c5de7594a2b",
}
PINNED_MT_KEY = "a3dc90cda7d2e51b434c58faad009163cfd8fba317df49eb34112b6c222a420a"


def plan_line(index: int, speaker: str = "S1", voice: str | None = None) -> Any:
    from tasks.segment import Line

    return Line(index, 1.0 * index, 1.0 * index + 0.8, "Hello.", 0.2, speaker=speaker, voice=voice)


@pytest.mark.parametrize(("tts", "voice"), sorted(PINNED_CLIP_KEYS))
def test_one_voice_jobs_keep_their_clip_cache_keys(tts: str, voice: str, tmp_path: Path) -> None:
    from tasks.synthesize import JobVoices, make_synthesizer

    config = build_config(video=Path("v.mp4"), langs="ja,de", tts=tts, voice=voice, cache_dir=tmp_path)
    voices = JobVoices(config, make_synthesizer(config, require_key=False))
    for speaker in ("S1", "S2"):  # without a cast every speaker has the job's voice
        assert voices.key_for(plan_line(0, speaker), "ja", TEXT) == PINNED_CLIP_KEYS[(tts, voice)]


def test_translation_cache_keys_unchanged(tmp_path: Path) -> None:
    from core.languages import get_language
    from tasks.translate import translation_key, translator_for

    config = build_config(video=Path("v.mp4"), langs="ja", cache_dir=tmp_path)
    identity = translator_for(config, require_key=False).identity()
    context = [["Hi.", "やあ。"]]
    key = translation_key(identity, get_language("en"), get_language("ja"), "Hello there.", context)
    assert key == PINNED_MT_KEY


def test_voice_of_a_line_is_its_own_then_its_speakers_then_the_jobs(tmp_path: Path) -> None:
    from tasks.synthesize import JobVoices, make_synthesizer

    config = build_config(
        video=Path("v.mp4"), langs="ja", voice="Cherry", cast="S2=ethan", cache_dir=tmp_path
    )
    voices = JobVoices(config, make_synthesizer(config, require_key=False))
    assert voices.voice_of(plan_line(0, "S1")) == "Cherry"
    assert voices.voice_of(plan_line(1, "S2")) == "Ethan"  # canonical catalogue name
    assert voices.voice_of(plan_line(2, "S2", voice="Serena")) == "Serena"
    keys = {voices.key_for(plan_line(n, s, v), "ja", TEXT) for n, s, v in [(0, "S1", None), (1, "S2", None)]}
    assert len(keys) == 2


@pytest.mark.parametrize(
    ("cast", "message"),
    [("S1=Nobody", "unknown voice 'Nobody'"), ("S1", "expected SPEAKER=VOICE"), ("=Cherry", "SPEAKER=VOICE")],
)
def test_bad_cast_is_one_line(cast: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config(video=Path("v.mp4"), langs="ja", cast=cast)


def test_a_plan_naming_an_unknown_voice_fails_before_anything_is_paid(tmp_path: Path) -> None:
    from tasks.synthesize import check_line_voices

    config = build_config(video=Path("v.mp4"), langs="ja", cache_dir=tmp_path)
    check_line_voices(config, ["Ethan", "cherry"])
    with pytest.raises(ConfigError, match="unknown voice 'Zed'"):
        check_line_voices(config, ["Ethan", "Zed"])


def write_two_speaker_plan(path: Path, sample_truth: dict, n: int, voice_of_last: str | None = None) -> Path:
    lines = []
    for i, s in enumerate(sample_truth["sentences"][:n]):
        line = {
            "index": i,
            "start": s["start"],
            "end": s["end"],
            "text": s["text"],
            "speaker": f"S{i % 2 + 1}",
        }
        lines.append(line)
    if voice_of_last:
        lines[-1]["voice"] = voice_of_last
    path.write_text(json.dumps({"source_language": "en", "lines": lines}))
    return path


@pytest.mark.e2e
def test_api_job_speaks_each_line_with_its_voice(
    prefect_harness,
    sample_video: Path,
    sample_truth: dict,
    tmp_path: Path,
    dashscope_server: LoopbackDashScope,
) -> None:
    """Two speakers cast to two voices, and one line with a voice of its own: every TTS request the
    loopback service received carried the voice of its line."""
    from flows.dub import dub

    plan = write_two_speaker_plan(tmp_path / "plan.json", sample_truth, 5, voice_of_last="Serena")
    config = build_config(
        video=sample_video, langs="en", out=tmp_path / "out", cache_dir=tmp_path / "cache", separator="none",
        segments=plan, voice="Cherry", cast="S2=Ethan", retry_base_delay_s=0.01,
    )  # fmt: skip
    dub(config)
    expected = {0: "Cherry", 1: "Ethan", 2: "Cherry", 3: "Ethan", 4: "Serena"}
    texts = {s["text"]: i for i, s in enumerate(sample_truth["sentences"][:5])}
    seen = {
        texts[r.body["input"]["text"]]: r.body["input"]["voice"] for r in dashscope_server.requests_of("tts")
    }
    assert seen == expected
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["job"]["cast"] == {"S2": "Ethan"}
    manifest = json.loads((tmp_path / "out" / "work" / "clips.en.json").read_text())
    assert set(manifest["voices"]) == {"Cherry", "Ethan", "Serena"}


@pytest.mark.e2e
def test_local_job_batches_by_voice(
    prefect_harness,
    sample_video: Path,
    sample_truth: dict,
    tmp_path: Path,
    tiny_qwen_tts: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The tiny Qwen3-TTS CustomVoice checkpoint through the real loader: each generate call holds one
    voice, and every line is asked for with its speaker's voice."""
    import qwen_tts
    import torch

    from flows.dub import dub

    calls: list[dict[str, Any]] = []
    original = qwen_tts.Qwen3TTSModel.generate_custom_voice

    def recording(self: Any, text: Any, speaker: Any, language: Any = None, **kwargs: Any) -> Any:
        calls.append({"text": list(text), "speaker": list(speaker), "language": list(language)})
        return original(self, text=text, speaker=speaker, language=language, **kwargs)

    monkeypatch.setattr(qwen_tts.Qwen3TTSModel, "generate_custom_voice", recording)
    plan = write_two_speaker_plan(tmp_path / "plan.json", sample_truth, 4)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = build_config(
            video=sample_video, langs="en", out=tmp_path / "out", cache_dir=tmp_path / "cache",
            separator="none", segments=plan, tts="local", voice="Ryan", cast="S2=Sohee",
            tts_local_model=str(tiny_qwen_tts["custom_voice"]), tts_batch=4, translator="local",
            shorten=False,
        )  # fmt: skip
        dub(config)
    finally:
        torch.set_num_threads(threads)
    assert calls, "the local engine was not called"
    spoken: dict[str, str] = {}
    for call in calls:
        assert len(set(call["speaker"])) == 1, call["speaker"]  # one voice per generate call
        spoken.update(zip(call["text"], call["speaker"], strict=True))
    by_speaker = {
        s["text"]: ("Ryan" if i % 2 == 0 else "Sohee") for i, s in enumerate(sample_truth["sentences"][:4])
    }
    assert {text: spoken[text] for text in by_speaker} == by_speaker
    first_call = {}  # retry rounds of the length guard (random weights) come after
    for call in calls:
        first_call.setdefault(call["speaker"][0], call["text"])
    assert {voice: len(texts) for voice, texts in first_call.items()} == {"Ryan": 2, "Sohee": 2}


def test_device_batches_hold_one_voice_longest_first_sized_by_the_limit(tmp_path: Path) -> None:
    from tasks.synthesize import JobVoices, make_synthesizer, voice_batches
    from tasks.translate import TranslatedLine

    config = build_config(
        video=Path("v.mp4"), langs="en", tts="local", voice="Ryan", cast="S2=Sohee", cache_dir=tmp_path
    )
    voices = JobVoices(config, make_synthesizer(config, require_key=False))
    lines = [
        TranslatedLine(i, float(i), i + 0.5, 0.1, "src", "x" * (10 + i), speaker="S1" if i < 5 else "S2")
        for i in range(8)
    ]
    sizes_asked: list[int] = []

    def limit(batch: list[Any]) -> int:  # a memory-style limit: fewer of the long lines fit
        sizes_asked.append(len(batch[0][0].text))
        return 2 if len(batch[0][0].text) >= 13 else 8

    batches = voice_batches([(ln, str(ln.index)) for ln in lines], voices, limit)
    assert [[ln.index for ln, _ in b] for b in batches] == [[4, 3], [2, 1, 0], [7, 6], [5]]
    assert all(len({voices.voice_of(ln) for ln, _ in b}) == 1 for b in batches)


def test_off_a_gpu_the_configured_batch_size_applies(tiny_qwen_tts: dict[str, Path]) -> None:
    from core.languages import get_language
    from models.base import SpeechRequest
    from models.qwen_local_tts import QwenLocalTTS

    tts = QwenLocalTTS(model=str(tiny_qwen_tts["custom_voice"]), device="cpu")
    assert tts.batch_limit([SpeechRequest("Hello there.", get_language("en"))]) is None
