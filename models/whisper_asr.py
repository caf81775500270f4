"""Speech recognition with faster-whisper (CTranslate2 Whisper), word timestamps and Silero VAD on."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from core.errors import ConfigError
from models.base import ProgressCallback, Transcript, TranscriptSegment, Word

CPU_DEFAULT_MODEL = "small"  # ~RTF 0.3 on 2 CPU cores with int8; good enough for line timing
GPU_DEFAULT_MODEL = "large-v3"
WHISPER_RATE = 16_000
# Recognition runs on windows of the audio, never the whole file: faster-whisper decodes what it is
# given into memory and computes its features for all of it at once (784 MiB peak at 10 minutes with
# the whole file). Five minutes per window with 30 s of overlap bound that, at the price of one
# overlap's re-recognition per window (10 %).
WINDOW_S = 300.0
OVERLAP_S = 30.0
ANCHOR_S = 0.5  # the same word heard by two windows starts within this much


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
        self,
        audio_path: Path,
        language: str | None,
        progress: ProgressCallback | None = None,
        window_s: float = WINDOW_S,
        overlap_s: float = OVERLAP_S,
    ) -> Transcript:
        """Recognise `audio_path` in windows of `window_s` seconds (each `overlap_s` longer than the step
        between them): memory is bounded by one window, and words near a window's edge come from the
        window in which they sit mid-way (see stitch_windows)."""
        model = load_model(self.name, self.device, self.compute_type)
        with sf.SoundFile(str(audio_path)) as f:
            src_rate, frames = int(f.samplerate), int(f.frames)
        duration = frames / src_rate
        detected, probability = language, 1.0
        windows: list[tuple[float, list[TranscriptSegment]]] = []
        for start, end in plan_windows(duration, window_s, overlap_s):
            audio = read_window(audio_path, start, end)
            segments_iter, info = model.transcribe(
                audio,
                language=detected,
                vad_filter=True,
                word_timestamps=True,
                beam_size=5,
                # Conditioning on previous text is the main cause of Whisper's repetition loops on music.
                condition_on_previous_text=False,
            )
            if not windows:  # the first window decides the language of all (as one pass over the file did)
                detected, probability = info.language, float(info.language_probability)
            segments: list[TranscriptSegment] = []
            for seg in segments_iter:
                words = tuple(
                    Word(w.start + start, w.end + start, w.word, w.probability) for w in (seg.words or [])
                )
                segments.append(
                    TranscriptSegment(
                        start=seg.start + start,
                        end=seg.end + start,
                        text=seg.text.strip(),
                        words=words,
                        no_speech_prob=seg.no_speech_prob,
                        avg_logprob=seg.avg_logprob,
                        compression_ratio=seg.compression_ratio,
                    )
                )
                if progress:
                    progress(min(seg.end + start, duration), duration)
            windows.append((start, segments))
            del audio
        return Transcript(
            language=detected or "",
            language_probability=probability,
            duration=duration,
            segments=tuple(stitch_windows(windows, overlap_s)),
            model=Path(self.name).name if os.sep in self.name else self.name,
        )


# -- windows -----------------------------------------------------------------------------------------------


def plan_windows(duration: float, window_s: float, overlap_s: float) -> list[tuple[float, float]]:
    """[start, end) of each window: starts `window_s` apart, each `overlap_s` longer (the last one ends
    at the end; a file up to window_s + overlap_s long is one window)."""
    if duration <= window_s + overlap_s:
        return [(0.0, duration)]
    out, start = [], 0.0
    while start + window_s + overlap_s < duration:
        out.append((start, start + window_s + overlap_s))
        start += window_s
    out.append((start, duration))
    return out


def read_window(path: Path, start: float, end: float) -> np.ndarray:
    """Seconds [start, end) of an audio file as 16 kHz mono float32 (what Whisper consumes)."""
    with sf.SoundFile(str(path)) as f:
        rate = int(f.samplerate)
        f.seek(int(round(start * rate)))
        data = f.read(int(round(end * rate)) - int(round(start * rate)), dtype="float32", always_2d=True)
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if rate != WHISPER_RATE:
        import soxr

        mono = soxr.resample(mono, rate, WHISPER_RATE, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def _norm(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def _mid(w: Word) -> float:
    return (w.start + w.end) / 2


def choose_cut(words: list[Word], lo: float, hi: float) -> float:
    """Where to hand over from one window to the next inside their overlap [lo, hi): the middle of the
    longest pause between two words in the overlap's middle half (a cut in silence splits no word), or
    the overlap's middle when no two words are there."""
    a, b = lo + (hi - lo) / 4, hi - (hi - lo) / 4
    best, cut = -1.0, (lo + hi) / 2
    for w, nxt in zip(words, words[1:], strict=False):
        mid = (w.end + nxt.start) / 2
        if a <= mid <= b and nxt.start - w.end > best:
            best, cut = nxt.start - w.end, mid
    return cut


def stitch_windows(
    windows: list[tuple[float, list[TranscriptSegment]]], overlap_s: float
) -> list[TranscriptSegment]:
    """One transcript from overlapping windows, each word exactly once. Between windows k and k+1 a cut
    is chosen in the overlap (choose_cut): window k gives the words before it; window k+1 gives the words
    from its own version of the first word after the cut (same text within 0.5 s), or, if it heard
    none such, those whose middle is past the cut. Words at a window's edge (cut off, or heard with no
    context) are never used: the cut sits at least a quarter of the overlap inside both windows."""
    if len(windows) == 1:
        return list(windows[0][1])
    flat = [[w for seg in segs for w in seg.words] for _, segs in windows]
    keep: list[tuple[float, float]] = []  # per window: [from, to) in track seconds, by word identity
    first_kept: list[Word | None] = [None] * len(windows)
    lo = float("-inf")
    for k in range(len(windows)):
        if k + 1 == len(windows):
            keep.append((lo, float("inf")))
            break
        next_start = windows[k + 1][0]
        cut = choose_cut(flat[k], next_start, next_start + overlap_s)
        after = [w for w in flat[k] if _mid(w) >= cut]
        anchor = after[0] if after else None
        match = None
        if anchor is not None:
            at, text = anchor.start, _norm(anchor.text)
            same = [w for w in flat[k + 1] if _norm(w.text) == text and abs(w.start - at) < ANCHOR_S]
            match = min(same, key=lambda w: abs(w.start - at), default=None)
        keep.append((lo, cut))
        first_kept[k + 1] = match
        lo = cut if match is None else min(cut, _mid(match))
    out: list[TranscriptSegment] = []
    for k, (_, segs) in enumerate(windows):
        a, b = keep[k]
        for seg in segs:
            if not seg.words:
                if a <= (seg.start + seg.end) / 2 < b:
                    out.append(seg)
                continue
            words = tuple(w for w in seg.words if a <= _mid(w) < b)
            anchor = first_kept[k]
            if anchor is not None:  # from the anchor on, whatever its middle says
                words = tuple(
                    w for w in seg.words if (w.start, w.end) >= (anchor.start, anchor.end) and _mid(w) < b
                )
            if words == seg.words:
                out.append(seg)
            elif words:
                out.append(
                    TranscriptSegment(
                        start=words[0].start,
                        end=words[-1].end,
                        text="".join(w.text for w in words).strip(),
                        words=words,
                        no_speech_prob=seg.no_speech_prob,
                        avg_logprob=seg.avg_logprob,
                        compression_ratio=seg.compression_ratio,
                    )
                )
    return out
