"""Mix a dub over the background at the source programme's loudness (ITU-R BS.1770 / EBU R128),
with true peak held under -1 dBTP."""

from __future__ import annotations

import numpy as np
from scipy.signal import resample_poly

TRUE_PEAK_CEILING_DBTP = -1.0  # EBU R128 / streaming platforms' delivery limit
OVERSAMPLE = 4  # BS.1770-4 true-peak estimation oversamples x4
DEFAULT_TARGET_LUFS = -23.0  # EBU R128 programme level, used when the source is silent
LIMITER_RELEASE_S = 0.05


def integrated_loudness(audio: np.ndarray, rate: int) -> float:
    """BS.1770 integrated loudness in LUFS (pyloudnorm); -inf for silence."""
    import pyloudnorm

    data = audio if audio.ndim == 2 else audio[:, None]
    if data.shape[0] < int(0.4 * rate):  # the gating block is 400 ms
        return float("-inf")
    return float(pyloudnorm.Meter(rate).integrated_loudness(data))


def true_peak_db(audio: np.ndarray) -> float:
    data = audio if audio.ndim == 2 else audio[:, None]
    up = resample_poly(data, OVERSAMPLE, 1, axis=0)
    peak = float(np.max(np.abs(up))) if up.size else 0.0
    return 20 * np.log10(peak) if peak > 0 else float("-inf")


def limit_true_peak(
    audio: np.ndarray, ceiling_dbtp: float = TRUE_PEAK_CEILING_DBTP, rate: int = 48000
) -> np.ndarray:
    """A look-ahead peak limiter on the 4x-oversampled envelope: gain never exceeds what keeps the
    true peak at the ceiling; gain changes are smoothed over a short release so speech is not distorted.
    A loudness-matched dub rarely needs more than a few dB of reduction on its loudest syllables."""
    data = audio if audio.ndim == 2 else audio[:, None]
    ceiling = 10 ** (ceiling_dbtp / 20) * 0.995  # small margin for the resampler's own ripple
    up = np.abs(resample_poly(data, OVERSAMPLE, 1, axis=0)).max(axis=1)
    env = up[: data.shape[0] * OVERSAMPLE].reshape(data.shape[0], OVERSAMPLE).max(axis=1)
    if env.max(initial=0.0) <= ceiling:
        return audio
    gain = np.minimum(1.0, ceiling / np.maximum(env, 1e-9))
    # look-ahead: a sample's gain is the minimum over a window around it, then smoothed
    win = max(1, int(LIMITER_RELEASE_S * rate))
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    gain = minimum_filter1d(gain, size=2 * win + 1, mode="nearest")
    gain = uniform_filter1d(gain, size=win, mode="nearest")
    gain = np.minimum(gain, np.minimum(1.0, ceiling / np.maximum(env, 1e-9)))
    out = data * gain[:, None].astype(data.dtype)
    return out if audio.ndim == 2 else out[:, 0]


def mix_dub(
    dub: np.ndarray,
    background: np.ndarray,
    rate: int,
    target_lufs: float,
) -> tuple[np.ndarray, float]:
    """Scale the dialogue so the whole mix lands at `target_lufs` (background level untouched), then
    hold true peak under the ceiling. Returns the mix (frames x channels) and the dialogue gain in dB."""
    channels = background.shape[1]
    dialogue = np.repeat(dub[:, None], channels, axis=1).astype(np.float32)
    if not np.isfinite(target_lufs):
        target_lufs = DEFAULT_TARGET_LUFS
    gain_db = 0.0
    if np.any(dialogue):
        # Loudness is not additive in dB, so iterate: each step corrects the remaining error.
        for _ in range(4):
            mix = background + dialogue * 10 ** (gain_db / 20)
            err = target_lufs - integrated_loudness(mix, rate)
            if not np.isfinite(err) or abs(err) < 0.05:
                break
            gain_db += err
    mix = (background + dialogue * 10 ** (gain_db / 20)).astype(np.float32)
    return limit_true_peak(mix, rate=rate), gain_db
