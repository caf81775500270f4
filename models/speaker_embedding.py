"""Speaker embeddings ("voice prints"): one unit vector per stretch of speech, close for the same voice.

The encoder is resemblyzer's GE2E model, which ships inside its PyPI wheel (17 MB, Apache-2.0): it runs on
every machine and in CI with no download. Measured on espeak-ng voices (shared docs environment.md): the
same voice scores cosine >= 0.85, different sexes <= 0.66, and two male voices of different accents can come
as close as 0.89, so callers compare against thresholds they measured for their purpose (clustering,
consent checks, the cast registry), never a fixed one from here.

The encoder loads once per process. Audio goes in as float32 mono at any rate; it is resampled to 16 kHz
(soxr) and level-normalised, without resemblyzer's own VAD trimming (callers pass speech spans).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

EMBEDDING_RATE = 16_000  # Hz: what the GE2E encoder was trained on
EMBEDDING_SIZE = 256
# Part of every cache key and stored voice print: prints from another encoder are not comparable.
EMBEDDING_MODEL = "resemblyzer-0.1.4-ge2e"
MIN_SPEECH_S = 0.5  # shorter stretches give unstable prints (resemblyzer's own partials are 1.6 s)
_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _encoder() -> Any:
    import warnings

    with warnings.catch_warnings():  # webrtcvad (imported by resemblyzer) warns that pkg_resources is
        warnings.simplefilter("ignore")  # deprecated: noise on the terminal after a job's last line
        from resemblyzer import VoiceEncoder

    return VoiceEncoder("cpu", verbose=False)


def to_embedding_rate(audio: np.ndarray, rate: int) -> np.ndarray:
    """Mono float32 at 16 kHz, peak-safe level normalisation (-20 dBFS RMS, as resemblyzer does)."""
    mono = audio.mean(axis=1) if audio.ndim > 1 else audio
    mono = np.asarray(mono, dtype=np.float32)
    if rate != EMBEDDING_RATE:
        import soxr

        mono = soxr.resample(mono, rate, EMBEDDING_RATE).astype(np.float32)
    rms = float(np.sqrt(np.mean(mono**2))) if mono.size else 0.0
    if rms > 0:
        mono = mono * min(10 ** (-20 / 20) / rms, 1.0 / max(float(np.max(np.abs(mono))), 1e-9))
    return mono


def embed(audio: np.ndarray, rate: int) -> np.ndarray:
    """The voice print of one stretch of speech: a unit float32 vector of EMBEDDING_SIZE."""
    wav = to_embedding_rate(audio, rate)
    if wav.size < MIN_SPEECH_S * EMBEDDING_RATE:
        raise ValueError(f"too little speech for a voice print ({wav.size / EMBEDDING_RATE:.2f} s)")
    with _LOCK:  # one forward pass at a time through the shared encoder
        vector = np.asarray(_encoder().embed_utterance(wav), dtype=np.float32)
    return vector / max(float(np.linalg.norm(vector)), 1e-9)


def embed_spans(audio: np.ndarray, rate: int, spans: Sequence[tuple[float, float]]) -> np.ndarray:
    """One voice print for several stretches of the same speaker (seconds): the mean of their prints,
    weighted by length, renormalised. Stretches shorter than MIN_SPEECH_S are joined to their
    neighbours rather than embedded alone."""
    pieces = [audio[int(a * rate) : int(b * rate)] for a, b in spans if b > a]
    joined = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    return embed(joined, rate)


def embed_file(path: Path, spans: Sequence[tuple[float, float]] | None = None) -> np.ndarray:
    """The voice print of an audio file (or of its `spans`), read with soundfile."""
    import soundfile as sf

    audio, rate = sf.read(str(path), dtype="float32", always_2d=False)
    if spans:
        return embed_spans(audio, int(rate), spans)
    return embed(audio, int(rate))


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two voice prints (1: the same voice)."""
    return float(np.dot(a, b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-9))
