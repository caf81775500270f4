"""The `Diarizer` role over pyannote.audio 4 pretrained pipelines (an optional extra, not installed by
default).

    pip install "pyannote.audio==4.0.7"        # the `diarization` extra; adds ~30 packages

`pipeline` is a local folder holding the pipeline's config.yaml (an offline copy) or a Hugging Face hub id
(e.g. "pyannote/speaker-diarization-community-1"), fetched with the token in HF_TOKEN. pyannote is imported
when the pipeline is first used, never at import time, so the default engine and `--help` stay free of it.
pyannote reports overlapping speech as overlapping turns; `speech` (a recogniser's words) is not needed
by the pipeline, which finds speech itself, and is used only to drop turns that hold none of it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from models.base import ProgressCallback
from models.diarization import RATE, SpeakerHints, Turn, load_audio

EXTRA = "pyannote.audio==4.0.7"


class PyannoteDiarizer:
    name = "pyannote"

    def __init__(self, pipeline: str, device: str = "cpu") -> None:
        self.pipeline_name = pipeline
        self.device = device
        self._pipeline: Any = None
        self._lock = threading.Lock()

    def identity(self) -> dict[str, Any]:
        local = Path(self.pipeline_name).expanduser()
        config = local / "config.yaml" if local.is_dir() else None
        snapshot = config.stat().st_mtime_ns if config is not None and config.is_file() else None
        return {
            "engine": self.name,
            "pipeline": self.pipeline_name,
            "snapshot": snapshot,
            "version": _version(),
        }

    def _load(self) -> Any:
        with self._lock:
            if self._pipeline is None:
                try:
                    from pyannote.audio import Pipeline
                except ImportError:
                    raise ConfigError(
                        f"the pyannote diarizer needs the optional extra: pip install '{EXTRA}'"
                    ) from None
                local = Path(self.pipeline_name).expanduser()
                source = str(local) if local.exists() else self.pipeline_name
                token = os.environ.get("HF_TOKEN") or None
                try:
                    pipeline = Pipeline.from_pretrained(source, token=token)
                except Exception as exc:  # hub refusal, missing files: one line, no token in it
                    raise ConfigError(
                        f"cannot load the pyannote pipeline {self.pipeline_name!r} "
                        f"({exc.__class__.__name__}); give a local folder with its config.yaml "
                        "or set HF_TOKEN for a hub id"
                    ) from None
                if pipeline is None:
                    raise ConfigError(f"pyannote pipeline {self.pipeline_name!r} not found (HF_TOKEN set?)")
                if self.device != "cpu":
                    import torch

                    pipeline.to(torch.device(self.device))
                self._pipeline = pipeline
            return self._pipeline

    def diarize(
        self,
        audio_path: Path,
        speech: Sequence[tuple[float, float]] | None = None,
        hints: SpeakerHints | None = None,
        progress: ProgressCallback | None = None,
    ) -> list[Turn]:
        import torch

        hints = hints or SpeakerHints()
        pipeline = self._load()
        waveform = torch.from_numpy(load_audio(audio_path)).unsqueeze(0)  # in memory: no torchcodec decode
        options: dict[str, int] = {}
        if hints.num is not None:
            options["num_speakers"] = hints.num
        else:
            options["min_speakers"] = hints.min
            if hints.max is not None:
                options["max_speakers"] = hints.max
        if progress:
            progress(0.0, 1.0)
        output = pipeline({"waveform": waveform, "sample_rate": RATE}, **options)
        annotation = getattr(output, "speaker_diarization", output)  # 4.x wraps it; 3.x returns it
        turns = [
            Turn(round(float(seg.start), 3), round(float(seg.end), 3), str(label))
            for seg, _, label in annotation.itertracks(yield_label=True)
        ]
        if speech:
            spans = sorted(speech)
            turns = [t for t in turns if any(a < t.end and b > t.start for a, b in spans)]
        if progress:
            progress(1.0, 1.0)
        return sorted(turns, key=lambda t: (t.start, t.end))


def _version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pyannote.audio")
    except PackageNotFoundError:
        return None
