"""Engines are registry entries: a toy TTS engine and a toy translator, each one adapter class plus one
entry, run a whole job; and each language is its own pipeline (a slow translation holds no other)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.config import DubConfig, build_config
from core.errors import ConfigError
from core.languages import Language
from models.base import SynthesizedClip
from models.registry import (
    TranslatorEngine,
    TTSEngine,
    VoiceInfo,
    register_translator,
    register_tts,
    unregister,
)

RATE = 24_000
EVENTS: list[tuple[float, str, str]] = []  # (time, what, language)
EVENTS_LOCK = threading.Lock()
SLOW = {"de": 0.4}  # seconds per translated line


def event(what: str, language: str) -> None:
    with EVENTS_LOCK:
        EVENTS.append((time.monotonic(), what, language))


class ToyTTS:
    """The adapter: a tone per line, 45 ms per character, pitched by the voice."""

    PITCH = {"Alto": 220.0, "Bass": 110.0}

    def __init__(self, voice: str, route: str) -> None:
        self.voice, self.route = voice, route

    def identity(self, voice: str | None = None) -> dict[str, Any]:
        return {"route": self.route, "voice": voice or self.voice, "version": 1}

    def synthesize(self, text: str, language: Language, voice: str | None = None) -> SynthesizedClip:
        event("synthesize", language.code)
        t = np.arange(int(0.045 * len(text) * RATE)) / RATE
        audio = 0.3 * np.sin(2 * np.pi * self.PITCH[voice or self.voice] * t) * np.hanning(t.size)
        return SynthesizedClip(audio.astype(np.float32), RATE, billed_characters=len(text))


class ToyTranslator:
    """The adapter: tags the text with the target language; German is slow."""

    def __init__(self, route: str) -> None:
        self.route = route

    def identity(self) -> dict[str, Any]:
        return {"route": self.route, "version": 1}

    def translate(
        self,
        text: str,
        source: Language | None,
        target: Language,
        context: Sequence[tuple[str, str]] = (),
        keep: Mapping[str, str] | None = None,
    ) -> str:
        time.sleep(SLOW.get(target.code, 0.0))
        event("translated", target.code)
        return f"[{target.code}] {text}"


class ToyShortener:
    route = "toy-mt"

    def identity(self) -> dict[str, Any]:
        return {"route": self.route}

    def shorten(self, source_text: str, text: str, source: Any, target: Any, max_chars: int) -> str:
        return text[:max_chars]


def toy_voice(config: DubConfig, name: str) -> str:
    for voice in ToyTTS.PITCH:
        if voice.lower() == name.strip().lower():
            return voice
    raise ConfigError(f"unknown toy voice {name!r}")


@pytest.fixture
def toy_engines() -> Iterator[None]:
    register_tts(
        TTSEngine(
            name="toy",
            needs_key=False,
            default_voice="Alto",
            build=lambda config, require_key: ToyTTS(config.voice or "Alto", "toy"),
            voices=lambda config: [VoiceInfo("Alto", "F"), VoiceInfo("Bass", "M")],
            resolve_voice=toy_voice,
            model_name=lambda config: "toy-1",
            label=lambda config: "toy tone engine",
            price=lambda characters, region: (characters / 1000, "TOY"),
        )
    )
    register_translator(
        TranslatorEngine(
            name="toy-mt",
            needs_key=False,
            build=lambda config, require_key: ToyTranslator("toy-mt"),
            shortener=lambda config, require_key: ToyShortener(),
            model_name=lambda config: "toy-mt-1",
        )
    )
    EVENTS.clear()
    yield
    unregister("toy")
    unregister("toy-mt")


def test_unknown_engines_are_one_line() -> None:
    with pytest.raises(ConfigError, match="unknown TTS engine 'toy'"):
        build_config(video=Path("v.mp4"), langs="de", tts="toy")


def test_a_toy_engine_is_validated_through_its_entry(toy_engines: None) -> None:
    config = build_config(video=Path("v.mp4"), langs="de", tts="toy", translator="toy-mt", cast="S2=bass")
    assert config.voice is None and config.cast == {"S2": "Bass"}  # None: cast automatically
    with pytest.raises(ConfigError, match="unknown toy voice 'Cherry'"):
        build_config(video=Path("v.mp4"), langs="de", tts="toy", voice="Cherry")


@pytest.mark.e2e
def test_a_job_runs_on_toy_engines_and_languages_do_not_wait_for_each_other(
    toy_engines: None, prefect_harness, sample_video: Path, sample_truth: dict, tmp_path: Path
) -> None:
    from flows.dub import dub

    lines = [
        {"index": i, "start": s["start"], "end": s["end"], "text": s["text"], "speaker": f"S{i % 2 + 1}"}
        for i, s in enumerate(sample_truth["sentences"])
    ]
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"source_language": "en", "lines": lines}))
    config = build_config(
        video=sample_video, langs="de,fr", out=tmp_path / "out", cache_dir=tmp_path / "cache",
        separator="none", segments=plan, tts="toy", translator="toy-mt", cast="S2=Bass", shorten=False,
    )  # fmt: skip
    result = dub(config)
    assert result.video is not None and result.video.is_file()

    german_translated = max(t for t, what, lang in EVENTS if what == "translated" and lang == "de")
    french_first_clip = min(t for t, what, lang in EVENTS if what == "synthesize" and lang == "fr")
    assert french_first_clip < german_translated, "French waited for the German translation"
    assert sum(1 for _, what, _ in EVENTS if what == "synthesize") == 2 * len(lines)

    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["job"]["tts"] == "toy" and report["job"]["tts_model"] == "toy-1"
    assert report["cost"]["currency"] == "TOY" and report["cost"]["billed_characters"] > 0
    assert "toy tone engine" in report["ai_disclosure"]
    german = json.loads((tmp_path / "out" / "lines.de.json").read_text())["lines"]
    assert all(line["text"].startswith("[de] ") for line in german)
