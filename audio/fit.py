"""Fit each synthesized clip into its line's slot: trim, stretch (pitch kept) up to a cap, place.

The slot runs from the line's start to its end plus the pause it may borrow, which stops a breath
before the next line (tasks/translate.py, breath_slot_end). A clip that fits is placed at the line start
unstretched; a longer one is time-stretched with Rubber Band's R3 engine up to MAX_SPEEDUP.

A line that still does not fit at the cap: the choice, in order, is (1) shorten again (tasks/line.py,
rewritten before synthesis and at most twice after it), then (2) a fade-out at the slot end (what is
cut is reported as truncated_s). An overlap into the following silence is not taken: that silence is
the next line's breath, which quality.md requires. bench/timing.py measures how often (2) happens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TRIM_THRESHOLD_DBFS = -45.0  # below this a clip's edge is silence (TTS edge padding measures < -60)
EDGE_FADE_S = 0.005  # 5 ms raised-cosine fades: removes clicks at cut points, inaudible on speech
OVERFLOW_FADE_S = 0.12  # last-resort fade-out when a clip still overruns its slot at the cap
STRETCH_BLOCK = 1 << 18  # samples per Rubber Band call (~11 s at 24 kHz)
DEFAULT_MAX_SPEEDUP = 1.25  # beyond this, speech sounds hurried (quality.md: speed factor <= 1.25)


@dataclass
class FitResult:
    audio: np.ndarray  # mono float32 at the clip's rate, ready to place at `start`
    start: float
    duration: float
    speed: float  # >1 means sped up
    truncated_s: float  # audio cut at the slot end (0 when it fit)
    source_duration: float  # trimmed clip duration before stretching


def trim_silence(audio: np.ndarray, rate: int, threshold_dbfs: float = TRIM_THRESHOLD_DBFS) -> np.ndarray:
    """Drop leading/trailing samples whose 10 ms RMS stays under the threshold."""
    hop = max(1, int(0.01 * rate))
    n = audio.size // hop
    if n == 0:
        return audio
    rms = np.sqrt(np.mean(audio[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(20 * np.log10(rms) > threshold_dbfs)
    if loud.size == 0:
        return audio[:0]
    return audio[loud[0] * hop : min(audio.size, (loud[-1] + 1) * hop)]


def fade_edges(audio: np.ndarray, rate: int, fade_s: float = EDGE_FADE_S) -> np.ndarray:
    n = min(int(fade_s * rate), audio.size // 2)
    if n <= 1:
        return audio
    ramp = (0.5 - 0.5 * np.cos(np.linspace(0, np.pi, n))).astype(audio.dtype)
    out = audio.copy()
    out[:n] *= ramp
    out[-n:] *= ramp[::-1]
    return out


def time_stretch(audio: np.ndarray, rate: int, speed: float) -> np.ndarray:
    """Pitch-preserving tempo change with Rubber Band's R3 ("finer") engine, the best-sounding one on
    speech, in offline mode (studies the whole clip first; output length exact). `speed` > 1 shortens.

    In-process through pylibrb (librubberband bindings): 0.12 s for a 3 s clip here, against 0.24 s
    for the same engine through the rubberband CLI (pyrubberband), whose process start and temp files
    dominated the fitting stage (14 s of 29 s on a 10-minute job)."""
    if abs(speed - 1.0) < 1e-3 or audio.size == 0:
        return audio
    from pylibrb import Option, RubberBandStretcher

    stretcher = RubberBandStretcher(
        sample_rate=rate,
        channels=1,
        options=Option.PROCESS_OFFLINE | Option.ENGINE_FINER,
        initial_time_ratio=1.0 / speed,
    )
    samples = np.ascontiguousarray(audio, dtype=np.float32)[None, :]
    n = samples.shape[1]
    # the library takes at most get_process_size_limit() samples per call (524288: 21.8 s at 24 kHz)
    step = min(n, STRETCH_BLOCK, stretcher.get_process_size_limit())  # type: ignore[misc]  # pylibrb stub types it as unbound
    stretcher.set_max_process_size(step)
    stretcher.set_expected_input_duration(n)
    for start in range(0, n, step):
        stretcher.study(samples[:, start : start + step], final=start + step >= n)
    out: list[np.ndarray] = []
    for start in range(0, n, step):
        stretcher.process(samples[:, start : start + step], final=start + step >= n)
        out.append(stretcher.retrieve_available()[0])
    while stretcher.available() > 0:
        out.append(stretcher.retrieve_available()[0])
    return np.concatenate(out).astype(np.float32)


def fit_clip_to_slot(
    audio: np.ndarray,
    rate: int,
    start: float,
    slot_end: float,
    max_speedup: float = DEFAULT_MAX_SPEEDUP,
) -> FitResult:
    clip = trim_silence(audio, rate)
    source_duration = clip.size / rate
    slot = max(slot_end - start, 0.05)
    speed = 1.0
    if source_duration > slot:
        speed = min(source_duration / slot, max_speedup)
        clip = time_stretch(clip, rate, speed)
    truncated = 0.0
    limit = int(round(slot * rate))
    if clip.size > limit:
        truncated = (clip.size - limit) / rate
        clip = clip[:limit].copy()
        n = min(int(OVERFLOW_FADE_S * rate), clip.size)
        clip[-n:] *= np.linspace(1.0, 0.0, n, dtype=np.float32)
    clip = fade_edges(clip.astype(np.float32), rate)
    return FitResult(clip, start, clip.size / rate, speed, truncated, source_duration)


def place_clips(fits: list[FitResult], rate: int, total_samples: int) -> np.ndarray:
    """Sum fitted clips into one mono track, each at its start sample (sample-accurate)."""
    track = np.zeros(total_samples, dtype=np.float32)
    for fit in fits:
        at = int(round(fit.start * rate))
        if at >= total_samples:
            continue
        end = min(total_samples, at + fit.audio.size)
        track[at:end] += fit.audio[: end - at]
    return track
