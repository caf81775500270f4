"""audio/mix.py on synthetic programme material: BS.1770 loudness, true peak, the limiter and the dub mix."""

from __future__ import annotations

import numpy as np
import pytest

from audio.mix import (
    DEFAULT_TARGET_LUFS,
    TRUE_PEAK_CEILING_DBTP,
    integrated_loudness,
    limit_true_peak,
    render_mix,
    true_peak_db,
)

RATE = 48_000
DURATION = 12.0
LINES = [(1.0, 3.5), (4.5, 7.0), (8.2, 10.6)]  # dialogue regions (s); gaps between lines
MARGIN_S = 0.1  # limiter look-ahead/release may act this close to dialogue


def _time() -> np.ndarray:
    return np.arange(int(DURATION * RATE)) / RATE


@pytest.fixture(scope="module")
def background() -> np.ndarray:
    """Stereo pink-ish noise (1/f power) plus a soft chord, at -30 LUFS."""
    n = int(DURATION * RATE)
    rng = np.random.default_rng(7)
    spec = np.fft.rfft(rng.standard_normal((n, 2)), axis=0)
    f = np.fft.rfftfreq(n, 1 / RATE)
    f[0] = f[1]
    noise = np.fft.irfft(spec / np.sqrt(f)[:, None], n=n, axis=0)
    noise /= np.sqrt(np.mean(noise**2))
    t = _time()[:, None]
    chord = sum(np.sin(2 * np.pi * fr * t + ph) for fr, ph in [(220.0, 0.0), (277.2, 1.0), (329.6, 2.0)])
    bg = 0.5 * noise + 0.3 * chord
    bg *= 10 ** ((-30.0 - integrated_loudness(bg, RATE)) / 20)
    return bg.astype(np.float32)


def speech_like(peaky: bool = False) -> np.ndarray:
    """Mono 'dub': harmonic bursts with a 4 Hz syllable envelope during LINES, silence in between.
    `peaky` uses zero-phase harmonics (glottal-pulse-like): peak/RMS about 19 dB, like unprocessed speech."""
    t = _time()
    dub = np.zeros(t.size)
    for i, (s, e) in enumerate(LINES):
        m = (t >= s) & (t < e)
        tt = t[m] - s
        f0 = 140.0 + 30 * i
        if peaky:
            x = sum(np.cos(2 * np.pi * f0 * k * tt) for k in range(1, 17))
        else:
            x = sum(np.sin(2 * np.pi * f0 * k * tt) / k for k in range(1, 8))
        syllables = 0.55 - 0.45 * np.cos(2 * np.pi * 4 * tt)
        dub[m] = x * syllables
    return dub.astype(np.float32)


def outside_dialogue() -> np.ndarray:
    t = _time()
    mask = np.ones(t.size, dtype=bool)
    for s, e in LINES:
        mask &= ~((t >= s - MARGIN_S) & (t < e + MARGIN_S))
    return mask


# -- measurement ---------------------------------------------------------------------------------------


def test_integrated_loudness_reference_tone() -> None:
    """BS.1770: a 997 Hz sine at 0 dBFS peak in one channel reads -3.01 LUFS."""
    t = np.arange(5 * RATE) / RATE
    sine = np.sin(2 * np.pi * 997 * t)
    assert integrated_loudness(sine, RATE) == pytest.approx(-3.01, abs=0.1)
    assert integrated_loudness(0.1 * sine, RATE) == pytest.approx(-23.01, abs=0.1)
    stereo = np.stack([0.1 * sine, 0.1 * sine], axis=1)
    assert integrated_loudness(stereo, RATE) == pytest.approx(-20.0, abs=0.1)
    assert integrated_loudness(np.zeros((5 * RATE, 2)), RATE) == float("-inf")
    assert integrated_loudness(sine[: int(0.3 * RATE)], RATE) == float("-inf")


def test_true_peak_sees_intersample_peaks() -> None:
    t = np.arange(RATE) / RATE
    # fs/4 sine at 45 degrees: every sample sits at 0.707 of the waveform's real peak
    x = np.sin(2 * np.pi * (RATE / 4) * t + np.pi / 4)
    sample_peak_db = 20 * np.log10(np.max(np.abs(x)))
    assert sample_peak_db == pytest.approx(-3.01, abs=0.05)
    assert true_peak_db(x) == pytest.approx(0.0, abs=0.3)
    assert true_peak_db(np.stack([0.5 * x, 0.25 * x], axis=1)) == pytest.approx(-6.02, abs=0.3)
    assert true_peak_db(np.zeros(100)) == float("-inf")


# -- the limiter ---------------------------------------------------------------------------------------


def test_limiter_holds_ceiling_and_leaves_the_rest_alone() -> None:
    t = np.arange(3 * RATE) / RATE
    x = 0.2 * np.sin(2 * np.pi * 300 * t)
    burst = (t >= 1.5) & (t < 1.52)
    x[burst] += 2.0 * np.sin(2 * np.pi * 2000 * t[burst])  # peaks near +6.8 dBFS
    x = x.astype(np.float32)
    assert true_peak_db(x) > 6.0

    out = limit_true_peak(x, rate=RATE)
    assert out.shape == x.shape
    assert true_peak_db(out) <= TRUE_PEAK_CEILING_DBTP
    far = (t < 1.5 - MARGIN_S) | (t >= 1.52 + MARGIN_S)
    np.testing.assert_allclose(out[far], x[far], atol=1e-6)
    # gain reduction is real, not a mute: the burst is still the loudest thing
    assert np.max(np.abs(out[burst])) > 0.6

    quiet = (0.5 * x / np.max(np.abs(x)) * 10 ** (-3 / 20)).astype(np.float32)
    assert limit_true_peak(quiet, rate=RATE) is quiet


def test_limiter_stereo() -> None:
    t = np.arange(2 * RATE) / RATE
    left = np.where((t > 1.0) & (t < 1.01), 3.0, 0.1) * np.sin(2 * np.pi * 1000 * t)
    right = 0.1 * np.sin(2 * np.pi * 500 * t)
    x = np.stack([left, right], axis=1).astype(np.float32)
    out = limit_true_peak(x, rate=RATE)
    assert out.shape == x.shape
    assert true_peak_db(out) <= TRUE_PEAK_CEILING_DBTP
    assert true_peak_db(out[:, 0]) <= TRUE_PEAK_CEILING_DBTP


def test_loudness_matches_pyloudnorm(background: np.ndarray) -> None:
    """audio/mix.py builds its K-weighting from pyloudnorm's private Meter._filters (pyloudnorm is pinned
    for that): the result must stay pyloudnorm's own measurement."""
    import pyloudnorm

    dub = speech_like()
    for audio in (background, dub, background + dub[:, None]):
        reference = pyloudnorm.Meter(RATE).integrated_loudness(np.asarray(audio, dtype=np.float64))
        assert integrated_loudness(audio, RATE) == pytest.approx(reference, abs=0.01)


# -- render_mix ----------------------------------------------------------------------------------------


def mix_dub(dub: np.ndarray, background: np.ndarray, rate: int, target: float) -> tuple[np.ndarray, float]:
    """The mix at the background's channel count (a silent background gives a mono mix: duplicated, as
    the encoder does) and the dialogue gain in dB."""
    result = render_mix(dub, background, rate, background.shape[1], target)
    channels = background.shape[1]
    audio = result.audio if result.audio.shape[1] == channels else np.repeat(result.audio, channels, axis=1)
    return audio, result.gain_db


@pytest.mark.parametrize("target", [-16.0, -23.0])
def test_mix_reaches_target_loudness(background: np.ndarray, target: float) -> None:
    dub = speech_like()
    mix, gain_db = mix_dub(dub, background, RATE, target)

    assert mix.shape == background.shape
    assert mix.dtype == np.float32
    assert integrated_loudness(mix, RATE) == pytest.approx(target, abs=1.0)
    assert true_peak_db(mix) <= TRUE_PEAK_CEILING_DBTP
    assert np.isfinite(gain_db)
    # the background is untouched between lines
    keep = outside_dialogue()
    np.testing.assert_allclose(mix[keep], background[keep], atol=1e-6, rtol=0)
    # and the dialogue is there, louder than the bed
    t = _time()
    inside = (t >= LINES[0][0]) & (t < LINES[0][1])
    diff = mix[inside] - background[inside]
    assert 10 * np.log10(np.mean(diff**2)) > 10 * np.log10(np.mean(background[inside] ** 2)) + 6


@pytest.mark.parametrize("target", [-16.0, -23.0])
def test_hot_dub_is_held_under_the_true_peak_ceiling(background: np.ndarray, target: float) -> None:
    dub = speech_like(peaky=True)
    dub *= 10 ** (6 / 20) / np.max(np.abs(dub))  # peaks at +6 dBFS before mixing
    mix, gain_db = mix_dub(dub, background, RATE, target)

    unlimited = background + np.repeat(dub[:, None], 2, axis=1) * 10 ** (gain_db / 20)
    if target == -16.0:
        # the limiter really had work to do here
        assert true_peak_db(unlimited) > TRUE_PEAK_CEILING_DBTP + 0.5
    assert true_peak_db(mix) <= TRUE_PEAK_CEILING_DBTP
    assert integrated_loudness(mix, RATE) == pytest.approx(target, abs=1.0)
    keep = outside_dialogue()
    np.testing.assert_allclose(mix[keep], background[keep], atol=1e-6, rtol=0)


def test_silent_source_target_falls_back_to_ebu_r128(background: np.ndarray) -> None:
    dub = speech_like()
    mix, gain_db = mix_dub(dub, background, RATE, float("-inf"))
    assert DEFAULT_TARGET_LUFS == -23.0
    assert integrated_loudness(mix, RATE) == pytest.approx(-23.0, abs=1.0)
    reference, reference_gain = mix_dub(dub, background, RATE, -23.0)
    assert gain_db == pytest.approx(reference_gain)
    np.testing.assert_array_equal(mix, reference)


def test_silent_dub_returns_the_background(background: np.ndarray) -> None:
    mix, gain_db = mix_dub(np.zeros(background.shape[0], dtype=np.float32), background, RATE, -16.0)
    assert gain_db == 0.0
    np.testing.assert_array_equal(mix, background)


def test_dub_over_silent_background() -> None:
    """No background (separation off, or a silent source): the dialogue alone is brought to the target."""
    silent = np.zeros((int(DURATION * RATE), 2), dtype=np.float32)
    mix, _ = mix_dub(speech_like(), silent, RATE, -20.0)
    assert integrated_loudness(mix, RATE) == pytest.approx(-20.0, abs=1.0)
    assert true_peak_db(mix) <= TRUE_PEAK_CEILING_DBTP
    keep = outside_dialogue()
    assert not np.any(mix[keep])


def test_ducking_lowers_the_background_only_under_dialogue() -> None:
    rate = 48000
    rng = np.random.default_rng(3)
    background = (rng.standard_normal((rate * 8, 2)) * 0.02).astype(np.float32)
    dub = np.zeros(rate * 8, dtype=np.float32)
    t = np.arange(rate * 2) / rate
    dub[rate * 3 : rate * 5] = 0.3 * np.sin(2 * np.pi * 200 * t)  # dialogue from 3 s to 5 s
    plain = render_mix(dub, background, rate, 2, -20.0)
    ducked = render_mix(dub, background, rate, 2, -20.0, duck_db=10.0)
    quiet = slice(0, rate * 2)  # well before the attack
    assert np.allclose(ducked.audio[quiet], plain.audio[quiet], atol=1e-6)
    # under the dialogue the background sits 10 dB lower: compare the bed alone (mix minus dialogue)
    speech = slice(int(rate * 3.5), int(rate * 4.5))
    bed_plain = plain.audio[speech] - (dub[speech] * 10 ** (plain.gain_db / 20))[:, None]
    bed_ducked = ducked.audio[speech] - (dub[speech] * 10 ** (ducked.gain_db / 20))[:, None]
    ratio_db = 20 * np.log10(np.sqrt(np.mean(bed_ducked**2)) / np.sqrt(np.mean(bed_plain**2)))
    assert abs(ratio_db + 10.0) < 0.5
    assert abs(ducked.integrated_lufs - (-20.0)) < 1.0
