"""audio/fit.py on synthetic clips: trimming, edge fades, pitch-kept stretching, slot fitting, placement."""

from __future__ import annotations

import numpy as np
import pytest

from audio.fit import (
    DEFAULT_MAX_SPEEDUP,
    EDGE_FADE_S,
    OVERFLOW_FADE_S,
    FitResult,
    fade_edges,
    fit_clip_to_slot,
    place_clips,
    time_stretch,
    trim_silence,
)

RATE = 24_000


def voiced(seconds: float, f0: float = 220.0, rms_dbfs: float = -16.0, rate: int = RATE) -> np.ndarray:
    """A steady harmonic tone (a sustained vowel) at a given RMS level."""
    t = np.arange(int(round(seconds * rate))) / rate
    x = sum(np.sin(2 * np.pi * f0 * k * t + 0.3 * k) / k for k in range(1, 7))
    x = x / np.sqrt(np.mean(x**2)) * 10 ** (rms_dbfs / 20)
    return x.astype(np.float32)


def silence(seconds: float, rate: int = RATE) -> np.ndarray:
    return np.zeros(int(round(seconds * rate)), dtype=np.float32)


def rms_db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2)) + 1e-12))


def f0_of(x: np.ndarray, rate: int) -> float:
    """Frequency of the strongest spectral peak, refined by parabolic interpolation on the log spectrum."""
    x = x.astype(np.float64) * np.hanning(x.size)
    n = 8 * x.size
    mag = np.log(np.abs(np.fft.rfft(x, n=n)) + 1e-12)
    k = int(np.argmax(mag))
    a, b, c = mag[k - 1], mag[k], mag[k + 1]
    offset = 0.5 * (a - c) / (a - 2 * b + c)
    return (k + offset) * rate / n


# -- fit_clip_to_slot --------------------------------------------------------------------------------


def test_clip_that_fits_is_placed_unstretched_at_line_start() -> None:
    speech = voiced(1.5)
    clip = np.concatenate([silence(0.2), speech, silence(0.3)])
    fit = fit_clip_to_slot(clip, RATE, start=2.0, slot_end=4.0)

    assert fit.speed == 1.0
    assert fit.truncated_s == 0.0
    assert fit.start == 2.0
    trimmed = trim_silence(clip, RATE)
    assert fit.audio.size == trimmed.size
    assert fit.source_duration == pytest.approx(1.5, abs=0.011)
    assert fit.duration == pytest.approx(fit.audio.size / RATE)
    # unchanged apart from the 5 ms edge fades
    n = int(EDGE_FADE_S * RATE)
    np.testing.assert_allclose(fit.audio[n:-n], trimmed[n:-n], atol=1e-7)

    track = place_clips([fit], RATE, int(6.0 * RATE))
    at = int(round(2.0 * RATE))
    assert not np.any(track[:at])
    np.testing.assert_array_equal(track[at : at + fit.audio.size], fit.audio)
    assert not np.any(track[at + fit.audio.size :])


def test_clip_needing_stretch_fills_the_slot_exactly() -> None:
    source = 2.3
    slot = source / 1.15
    clip = np.concatenate([silence(0.25), voiced(source), silence(0.25)])
    fit = fit_clip_to_slot(clip, RATE, start=1.0, slot_end=1.0 + slot)

    assert fit.speed == pytest.approx(1.15, abs=1e-6)
    assert fit.source_duration == pytest.approx(source, abs=0.011)
    assert abs(fit.audio.size / RATE - slot) <= 0.005
    assert fit.truncated_s <= 0.005
    assert fit.duration <= slot + 1 / RATE
    # the tail is the stretched speech at full level, not the overflow fade-out
    before_fade = fit.audio[-int(0.1 * RATE) - int(EDGE_FADE_S * RATE) : -int(EDGE_FADE_S * RATE)]
    assert rms_db(before_fade) == pytest.approx(rms_db(fit.audio), abs=2.0)


def test_clip_beyond_the_cap_is_capped_truncated_and_faded() -> None:
    source = 2.3
    start, slot = 1.0, source / 1.6
    slot_end = start + slot
    clip = np.concatenate([silence(0.2), voiced(source), silence(0.2)])
    fit = fit_clip_to_slot(clip, RATE, start=start, slot_end=slot_end, max_speedup=1.25)

    assert fit.speed == pytest.approx(1.25)
    expected_cut = source / 1.25 - slot
    assert fit.truncated_s > 0
    assert fit.truncated_s == pytest.approx(expected_cut, abs=0.02)
    assert fit.audio.size <= int(round(slot * RATE))
    assert fit.start + fit.duration <= slot_end + 1e-9

    # tail: last samples near zero, and the last ~120 ms is a fade-out (each step quieter)
    assert abs(float(fit.audio[-1])) < 1e-3
    assert np.max(np.abs(fit.audio[-int(0.002 * RATE) :])) < 0.02
    tail = fit.audio[-int(OVERFLOW_FADE_S * RATE) :]
    quarters = [rms_db(q) for q in np.array_split(tail, 4)]
    assert all(b < a for a, b in zip(quarters, quarters[1:], strict=False)), quarters
    assert quarters[-1] < rms_db(fit.audio[: int(0.5 * RATE)]) - 10

    # placed before the next line: nothing of this clip crosses into the next line's start
    next_line_at = int(round(slot_end * RATE))
    track = place_clips([fit], RATE, int(5.0 * RATE))
    assert np.any(track[next_line_at - int(0.2 * RATE) : next_line_at])
    assert not np.any(track[next_line_at:])


def test_default_cap_is_applied() -> None:
    clip = voiced(3.0)
    fit = fit_clip_to_slot(clip, RATE, start=0.0, slot_end=1.0)
    assert fit.speed == pytest.approx(DEFAULT_MAX_SPEEDUP)
    assert fit.audio.size == int(round(1.0 * RATE))
    assert fit.truncated_s == pytest.approx(3.0 / DEFAULT_MAX_SPEEDUP - 1.0, abs=0.02)


# -- time_stretch --------------------------------------------------------------------------------------


def test_time_stretch_preserves_pitch() -> None:
    tone = voiced(2.0, f0=220.0)
    out = time_stretch(tone, RATE, 1.25)
    assert out.dtype == np.float32
    assert out.size / RATE == pytest.approx(2.0 / 1.25, rel=0.01)
    assert f0_of(tone[int(0.4 * RATE) : int(1.4 * RATE)], RATE) == pytest.approx(220.0, rel=0.002)
    middle = out[int(0.3 * RATE) : int(1.3 * RATE)]
    assert f0_of(middle, RATE) == pytest.approx(220.0, rel=0.01)
    # and the level is kept (no large gain change from the stretcher)
    assert rms_db(middle) == pytest.approx(rms_db(tone), abs=1.5)


def test_time_stretch_identity_for_speed_one() -> None:
    tone = voiced(0.5)
    assert time_stretch(tone, RATE, 1.0) is tone


# -- trim_silence --------------------------------------------------------------------------------------


def test_trim_silence_removes_edges_and_keeps_quiet_speech() -> None:
    rng = np.random.default_rng(1)
    lead, speech_s, tail = 0.305, 1.2, 0.42
    quiet_speech = voiced(speech_s, rms_dbfs=-38.0)  # quiet but clearly audible (> -45 dBFS)
    clip = np.concatenate([silence(lead), quiet_speech, silence(tail)])
    clip += (rng.standard_normal(clip.size) * 10 ** (-70 / 20)).astype(np.float32)  # TTS edge noise floor

    out = trim_silence(clip, RATE)
    hop = int(0.01 * RATE)
    speech_at = int(round(lead * RATE))
    assert out.size == pytest.approx(quiet_speech.size, abs=2 * hop)
    # the whole quiet speech survives: the output is a contiguous slice covering it
    start = int(np.flatnonzero(clip == out[0])[0])
    np.testing.assert_array_equal(clip[start : start + out.size], out)
    assert speech_at - hop <= start <= speech_at
    assert start + out.size >= speech_at + quiet_speech.size
    assert start + out.size <= speech_at + quiet_speech.size + hop


def test_trim_silence_threshold() -> None:
    below = voiced(1.0, rms_dbfs=-50.0)
    assert trim_silence(below, RATE).size == 0
    assert trim_silence(silence(1.0), RATE).size == 0
    above = voiced(1.0, rms_dbfs=-42.0)
    assert trim_silence(above, RATE).size >= above.size - int(0.01 * RATE)


def test_trim_silence_keeps_internal_pauses() -> None:
    clip = np.concatenate([silence(0.1), voiced(0.5), silence(0.4), voiced(0.5), silence(0.1)])
    out = trim_silence(clip, RATE)
    assert out.size == pytest.approx(int(1.4 * RATE), abs=int(0.01 * RATE))


# -- fade_edges ----------------------------------------------------------------------------------------


def test_fade_edges_leaves_no_click() -> None:
    flat = np.full(RATE, 0.8, dtype=np.float32)  # worst case: cut in the middle of a loud sample run
    out = fade_edges(flat, RATE)
    n = int(EDGE_FADE_S * RATE)
    assert abs(float(out[0])) < 1e-6
    assert abs(float(out[-1])) < 1e-6
    np.testing.assert_array_equal(out[n:-n], flat[n:-n])
    # smooth ramps: no sample-to-sample jump bigger than a raised cosine over 5 ms allows
    steps = np.abs(np.diff(out.astype(np.float64)))
    assert steps.max() < 0.8 * np.pi / (2 * (n - 1)) + 1e-4
    assert np.all(np.diff(out[:n]) >= 0) and np.all(np.diff(out[-n:]) <= 0)
    # the input is not modified in place
    assert np.all(flat == np.float32(0.8))


def test_fade_edges_short_clip() -> None:
    short = np.full(50, 0.5, dtype=np.float32)
    out = fade_edges(short, RATE)
    assert abs(float(out[0])) < 1e-6 and abs(float(out[-1])) < 1e-6


def test_fitted_clips_start_and_end_at_zero() -> None:
    clip = voiced(1.2, rms_dbfs=-10.0)
    for slot_end in (3.0, 1.0, 0.6):
        fit = fit_clip_to_slot(clip, RATE, 0.0, slot_end)
        assert abs(float(fit.audio[0])) < 1e-4
        assert abs(float(fit.audio[-1])) < 1e-4


# -- place_clips ---------------------------------------------------------------------------------------


def _fit(start: float, audio: np.ndarray) -> FitResult:
    return FitResult(audio, start, audio.size / RATE, 1.0, 0.0, audio.size / RATE)


@pytest.mark.parametrize("start", [0.0, 0.123456, 1.00002, 2.71828, 3.3333333])
def test_place_clips_is_sample_accurate(start: float) -> None:
    audio = (np.arange(1, 101, dtype=np.float32)) / 100
    track = place_clips([_fit(start, audio)], RATE, 5 * RATE)
    at = round(start * RATE)
    nonzero = np.flatnonzero(track)
    assert nonzero[0] == at
    assert nonzero[-1] == at + audio.size - 1
    np.testing.assert_array_equal(track[at : at + audio.size], audio)


def test_place_clips_clips_past_the_end_and_sums_overlaps() -> None:
    total = 2 * RATE
    a = np.full(1000, 0.25, dtype=np.float32)
    b = np.full(1000, 0.5, dtype=np.float32)
    late = np.full(300, 0.1, dtype=np.float32)
    beyond = np.full(300, 0.9, dtype=np.float32)
    fits = [
        _fit(0.5, a),
        _fit(0.5 + 500 / RATE, b),
        _fit((total - 100) / RATE, late),
        _fit(3.0, beyond),
    ]
    track = place_clips(fits, RATE, total)
    assert track.size == total
    assert track.dtype == np.float32
    at = RATE // 2
    np.testing.assert_array_equal(track[at : at + 500], 0.25)
    np.testing.assert_array_equal(track[at + 500 : at + 1000], 0.75)
    np.testing.assert_array_equal(track[at + 1000 : at + 1500], 0.5)
    np.testing.assert_array_equal(track[total - 100 :], np.float32(0.1))
    assert not np.any(track[at + 1500 : total - 100])


def test_long_clip_is_stretched_in_blocks_to_the_exact_length() -> None:
    """Rubber Band takes at most 524288 samples per call (21.8 s at 24 kHz); a 30 s line must work."""
    from audio.fit import time_stretch

    rate = 24000
    t = np.arange(30 * rate) / rate
    clip = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    out = time_stretch(clip, rate, 1.25)
    assert out.size == int(clip.size / 1.25)
    spectrum = np.abs(np.fft.rfft(out * np.hanning(out.size)))
    assert abs(np.argmax(spectrum) * rate / out.size - 220.0) < 2.2
