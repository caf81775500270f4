"""Speech recognition with faster-whisper (CTranslate2 Whisper), word timestamps and Silero VAD on."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from models.base import ProgressCallback, Transcript, TranscriptSegment, Word

CPU_DEFAULT_MODEL = "small"  # ~RTF 0.3 on 2 CPU cores with int8; good enough for line timing
GPU_DEFAULT_MODEL = "large-v3"


def cuda_available() -> bool:
    try:
        import ctranslate2

        return ctranslate2.get_cuda_device_count() > 0
    except Exception:  # noqa: BLE001 - any failure to query CUDA means "no GPU" here
        return False


def resolve_model_name(model: str) -> str:
    """'auto' picks by device; a directory must hold a CTranslate2 model; anything else is a model
    name faster-whisper downloads on first use (e.g. small, large-v3, distil-large-v3)."""
    if model == "auto":
        return GPU_DEFAULT_MODEL if cuda_available() else CPU_DEFAULT_MODEL
    path = Path(model).expanduser()
    if os.sep in model or path.exists():
        if not (path / "model.bin").is_file():
            raise ConfigError(f"--asr-model {model}: not a CTranslate2 Whisper directory (no model.bin)")
        return str(path.resolve())
    return model


@functools.lru_cache(maxsize=2)
def load_model(model: str, device: str, compute_type: str) -> Any:
    """faster-whisper's model, from a CTranslate2 folder or the hub cache (fetched on first use unless
    HF_HUB_OFFLINE is set); a model that cannot be loaded is one ConfigError naming it and the fix."""
    from faster_whisper import WhisperModel

    try:
        return WhisperModel(model, device=device, compute_type=compute_type)
    except (OSError, ValueError, RuntimeError) as exc:  # hub errors are OSErrors; CTranslate2 raises these
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        fix = (
            "is it a complete CTranslate2 Whisper folder?"
            if os.sep in model
            else f"fetch it with `qwen-dub models pull --asr-model {model}`"
        )
        raise ConfigError(f"speech recognition model {model!r} cannot be loaded: {reason} ({fix})") from None


class FasterWhisperTranscriber:
    def __init__(self, model: str = "auto", device: str = "auto", compute_type: str = "auto") -> None:
        self.name = resolve_model_name(model)
        self.device = ("cuda" if cuda_available() else "cpu") if device == "auto" else device
        # int8 on CPU is 2-4x faster than float32 at a negligible WER cost; float16 on GPU.
        self.compute_type = (
            ("float16" if self.device == "cuda" else "int8") if compute_type == "auto" else compute_type
        )

    def identity(self) -> dict[str, Any]:
        return {"model": self.name, "compute_type": self.compute_type, "vad": True, "word_timestamps": True}

    def transcribe(
        self, audio_path: Path, language: str | None, progress: ProgressCallback | None = None
    ) -> Transcript:
        model = load_model(self.name, self.device, self.compute_type)
        segments_iter, info = model.transcribe(
            str(audio_path),
            language=language,
            vad_filter=True,
            word_timestamps=True,
            beam_size=5,
            # Conditioning on previous text is the main cause of Whisper's repetition loops on music.
            condition_on_previous_text=False,
        )
        segments: list[TranscriptSegment] = []
        for seg in segments_iter:
            words = tuple(Word(w.start, w.end, w.word, w.probability) for w in (seg.words or []))
            segments.append(
                TranscriptSegment(
                    start=seg.start,
                    end=seg.end,
                    text=seg.text.strip(),
                    words=words,
                    no_speech_prob=seg.no_speech_prob,
                    avg_logprob=seg.avg_logprob,
                    compression_ratio=seg.compression_ratio,
                )
            )
            if progress:
                progress(min(seg.end, info.duration), info.duration)
        return Transcript(
            language=info.language,
            language_probability=float(info.language_probability),
            duration=float(info.duration),
            segments=tuple(segments),
            model=Path(self.name).name if os.sep in self.name else self.name,
        )
