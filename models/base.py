"""The roles engines play, as small Protocols, and the records they exchange."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from core.languages import Language

ProgressCallback = Callable[[float, float], None]  # (done, total) in the stage's own unit


@dataclass(frozen=True)
class Word:
    start: float  # seconds from the start of the audio
    end: float
    text: str  # as the recogniser wrote it, leading space included
    probability: float = 1.0


@dataclass(frozen=True)
class TranscriptSegment:
    start: float
    end: float
    text: str
    words: tuple[Word, ...]
    no_speech_prob: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 1.0


@dataclass(frozen=True)
class Transcript:
    language: str  # ISO 639-1 as detected (or given)
    language_probability: float
    duration: float
    segments: tuple[TranscriptSegment, ...]
    model: str

    def to_json(self) -> dict[str, Any]:
        return {
            "language": self.language,
            "language_probability": self.language_probability,
            "duration": self.duration,
            "model": self.model,
            "segments": [
                {
                    "start": s.start,
                    "end": s.end,
                    "text": s.text,
                    "no_speech_prob": s.no_speech_prob,
                    "avg_logprob": s.avg_logprob,
                    "compression_ratio": s.compression_ratio,
                    "words": [[w.start, w.end, w.text, w.probability] for w in s.words],
                }
                for s in self.segments
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Transcript:
        return cls(
            language=data["language"],
            language_probability=data["language_probability"],
            duration=data["duration"],
            model=data["model"],
            segments=tuple(
                TranscriptSegment(
                    start=s["start"],
                    end=s["end"],
                    text=s["text"],
                    no_speech_prob=s.get("no_speech_prob", 0.0),
                    avg_logprob=s.get("avg_logprob", 0.0),
                    compression_ratio=s.get("compression_ratio", 1.0),
                    words=tuple(Word(*w) for w in s["words"]),
                )
                for s in data["segments"]
            ),
        )


@dataclass
class SynthesizedClip:
    audio: np.ndarray  # float32 mono in [-1, 1]
    sample_rate: int
    billed_characters: int = 0  # as reported by the service (0 for local engines)
    attempts: int = 1
    requests: int = 1  # >1 when a long line was split into several requests
    extra: dict[str, Any] = field(default_factory=dict)


class Transcriber(Protocol):
    name: str

    def transcribe(
        self, audio_path: Path, language: str | None, progress: ProgressCallback | None = None
    ) -> Transcript: ...


class Translator(Protocol):
    route: str

    def identity(self) -> dict[str, Any]:
        """Everything besides the text that determines the output (for cache keys)."""
        ...

    def translate(
        self,
        text: str,
        source: Language | None,
        target: Language,
        context: Sequence[tuple[str, str]] = (),
        keep: Mapping[str, str] | None = None,
    ) -> str:
        """`context`: (source, translation) of the lines just before, oldest first. `keep`: terms this
        line's translation must contain (source -> target), on top of the glossary."""
        ...


@dataclass(frozen=True)
class SpeechRequest:
    """One line to speak: its text, its language and its voice (a name from the engine's catalogue;
    None: the synthesizer's own voice, the only choice for a designed or cloned voice)."""

    text: str
    language: Language
    voice: str | None = None
    # Runs that already synthesised this line and had it flagged by a quality guard (the clip cache's
    # guard_tries): an engine with fixed seeds starts past the seeds those runs used, so a retry can differ.
    earlier_tries: int = 0


class SpeechSynthesizer(Protocol):
    route: str  # the engine's registry name (models/registry.py): part of every clip cache key

    def identity(self, voice: str | None = None) -> dict[str, Any]:
        """Route, model snapshot, voice, instructions, generation parameters: the clip cache key minus
        the text and language, for lines spoken with `voice` (None: the synthesizer's own voice)."""
        ...

    def synthesize(self, text: str, language: Language, voice: str | None = None) -> SynthesizedClip: ...


@runtime_checkable
class BatchSpeechSynthesizer(SpeechSynthesizer, Protocol):
    """An engine that runs several requests, of any languages and voices, in one call on a device."""

    def synthesize_requests(self, requests: Sequence[SpeechRequest]) -> list[SynthesizedClip]: ...

    def batch_limit(self, requests: Sequence[SpeechRequest]) -> int | None:
        """Requests like these (the longest decides) that fit one call on the device; None: no limit
        known, the configured batch size applies."""
        ...


class Separator(Protocol):
    name: str

    def identity(self) -> dict[str, Any]: ...

    def separate(
        self,
        audio_path: Path,
        vocals_path: Path,
        background_path: Path,
        progress: ProgressCallback | None = None,
    ) -> None: ...
