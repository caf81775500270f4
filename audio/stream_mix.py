"""Loudness, placement and mixing chunk by chunk: memory bounded by the chunk, whatever the length.

The whole-track functions of audio.mix are the reference; this module gives the same result without
ever holding a track:

- loudness: the K-weighting filter runs chunk after chunk with its state carried over (`KFilter`), and
  100 ms sub-block energies are summed with the unfinished sub-block carried to the next chunk
  (`SubblockSums`), so the sums, and the gated loudness computed from them, are those of the whole track;
- placement: `PlacedDub.read(lo, hi)` sums the fitted clips (files) that overlap [lo, hi), resampled
  one clip at a time exactly as audio.fit.place_clips places whole-track clips;
- the mix: two passes. The first accumulates the sub-block energies of the dialogue, of the (ducked)
  background and their cross term, which fix the dialogue gain (audio.mix.MixLoudness); the second
  renders each chunk with enough context either side for the ducking and the true-peak limiter to see
  what they see on the whole track (audio.mix.limiter_reach, DUCK_REACH_HOPS), hands it to a sink (the
  encoder's pipe) and measures the delivered track (integrated loudness, true peak) as it goes.

Chunked output equals audio.mix.render_mix on the whole track to within float32 rounding of the
limiter's and the ducking's smoothing filters (tests/test_stream_mix.py: within one 24-bit LSB).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import sosfilt

from audio.mix import (
    DEFAULT_TARGET_LUFS,
    DUCK_REACH_HOPS,
    STEP_S,
    TRUE_PEAK_CEILING_DBTP,
    MixLoudness,
    _blocks,
    _gated,
    _k_weighting_sos,
    _subblock_sums,
    _true_peak_envelope,
    duck_hop,
    duck_per_hop,
    limit_true_peak,
    limiter_reach,
)

CHUNK_S = 20.0  # seconds per chunk: ~8 MB per stereo float32 buffer at 48 kHz, a few buffers alive
CLIP_CACHE = 64  # at most this many resampled clips kept between reads (those still ahead)


def resample_clip(audio: np.ndarray, src: int, dst: int) -> np.ndarray:
    """One clip to the track's rate (soxr HQ), as tasks.assemble.resample does it."""
    if src == dst:
        return audio
    import soxr

    return np.asarray(soxr.resample(audio, src, dst, quality="HQ"), dtype=np.float32)


# -- loudness, streamed --------------------------------------------------------------------------------


class KFilter:
    """BS.1770 K-weighting of consecutive chunks (frames x channels, or mono), the filter state carried
    over: the output is audio.mix.k_filter's on the concatenation."""

    def __init__(self, rate: int) -> None:
        self.sos, self.gain = _k_weighting_sos(rate)
        self.state: list[np.ndarray] = []

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        data = np.asarray(chunk, dtype=np.float32)
        cols = [data] if data.ndim == 1 else [np.ascontiguousarray(data[:, c]) for c in range(data.shape[1])]
        while len(self.state) < len(cols):
            self.state.append(np.zeros((self.sos.shape[0], 2), dtype=np.float32))
        out = []
        for c, col in enumerate(cols):
            y, self.state[c] = sosfilt(self.sos, col, zi=self.state[c])
            out.append((y * self.gain).astype(np.float32))
        return out[0] if data.ndim == 1 else np.stack(out, 1)


class SubblockSums:
    """Sums of a*b over the track's 100 ms sub-blocks, fed chunk by chunk (samples of an unfinished
    sub-block wait for the next chunk, so every sum is over the same samples as on the whole track)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.n = int(round(STEP_S * rate))
        self.parts: list[np.ndarray] = []
        self.tail: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        if self.tail is not None:
            a, b = np.concatenate([self.tail[0], a]), np.concatenate([self.tail[1], b])
        whole = (a.shape[0] // self.n) * self.n
        if whole:
            self.parts.append(_subblock_sums(a[:whole], b[:whole], self.rate))
        self.tail = (a[whole:].copy(), b[whole:].copy())

    def result(self, channels: int) -> np.ndarray:
        """subblocks x channels (a mono sum repeated over `channels`)."""
        sums = [p if p.ndim == 2 else p[:, None] for p in self.parts]
        out = np.concatenate(sums) if sums else np.zeros((0, 1))
        return out if out.shape[1] == channels else np.repeat(out[:, :1], channels, axis=1)


class LoudnessMeter:
    """Integrated loudness (BS.1770-4) of a track fed chunk by chunk; equals
    audio.mix.integrated_loudness of the whole track."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.kfilter = KFilter(rate)
        self.sums = SubblockSums(rate)
        self.channels = 1

    def add(self, chunk: np.ndarray) -> None:
        data = chunk if chunk.ndim == 2 else chunk[:, None]
        self.channels = data.shape[1]
        k = self.kfilter(data)
        self.sums.add(k, k)

    def integrated(self) -> float:
        return _gated(_blocks(self.sums.result(self.channels), self.rate))


def file_loudness(path: Path, chunk_s: float = CHUNK_S) -> float:
    """Integrated loudness of an audio file, read chunk by chunk."""
    with sf.SoundFile(str(path)) as f:
        meter = LoudnessMeter(int(f.samplerate))
        step = max(1, int(chunk_s * f.samplerate))
        while True:
            block = f.read(step, dtype="float32", always_2d=True)
            if block.shape[0] == 0:
                break
            meter.add(block)
    return meter.integrated()


class TruePeakMeter:
    """True peak (4x oversampled) of a track fed chunk by chunk: each sample is judged with MARGIN real
    neighbours on both sides where the track has them, as on the whole track."""

    MARGIN = 64  # >= the oversampling filter's support

    def __init__(self) -> None:
        self.peak = 0.0
        self.sample_peak = 0.0
        self.held = np.zeros((0, 1), dtype=np.float32)  # the last samples seen, from track sample held_at
        self.held_at = 0
        self.judged = 0  # samples before this track index are judged

    def _judge(self, data: np.ndarray, start: int, stop: int) -> None:
        lo, hi = start - self.held_at, stop - self.held_at
        if hi > lo:
            # only samples near the loudest so far need the oversampled look (a lower floor than the
            # whole track's peak looks at more of them, never at fewer: the same true peak)
            self.sample_peak = max(self.sample_peak, float(np.abs(data).max(initial=0.0)))
            env = _true_peak_envelope(data, floor=self.sample_peak)
            self.peak = max(self.peak, float(env[lo:hi].max(initial=0.0)))
            self.judged = stop

    def add(self, chunk: np.ndarray) -> None:
        data = chunk if chunk.ndim == 2 else chunk[:, None]
        if self.held.shape[0]:
            data = np.concatenate([self.held, data])
        end = self.held_at + data.shape[0]
        self._judge(data, self.judged, end - self.MARGIN)
        keep_from = max(self.held_at, self.judged - self.MARGIN)
        self.held = data[keep_from - self.held_at :].copy()
        self.held_at = keep_from

    def dbtp(self) -> float:
        self._judge(self.held, self.judged, self.held_at + self.held.shape[0])
        return 20 * np.log10(self.peak) if self.peak > 0 else float("-inf")


# -- placement -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlacedClip:
    """A fitted clip on disk (mono, at its own rate), placed at `start` seconds."""

    path: str
    start: float


class PlacedDub:
    """The dialogue track of placed clips, readable by ranges without ever being built whole: the same
    samples as audio.fit.place_clips of the clips resampled to `rate`, summed in the same order."""

    def __init__(self, clips: Sequence[PlacedClip], rate: int, total: int) -> None:
        self.clips, self.rate, self.total = list(clips), rate, total
        self.cache: dict[int, np.ndarray] = {}
        self.at = np.array([int(round(c.start * rate)) for c in self.clips], dtype=np.int64)
        # exact placed lengths: resampled once here (a clip is a few seconds; nothing is kept)
        self.length = np.array([self._load(i).size for i in range(len(self.clips))], dtype=np.int64)
        self.cache.clear()

    def _load(self, i: int) -> np.ndarray:
        audio = self.cache.get(i)
        if audio is None:
            data, clip_rate = sf.read(self.clips[i].path, dtype="float32")
            if data.ndim > 1:
                data = data.mean(axis=1)
            audio = resample_clip(np.asarray(data, dtype=np.float32), int(clip_rate), self.rate)
            if len(self.cache) >= CLIP_CACHE:
                self.cache.pop(next(iter(self.cache)))
            self.cache[i] = audio
        return audio

    def placed_seconds(self, i: int) -> float:
        return float(self.length[i]) / self.rate

    def read(self, lo: int, hi: int) -> np.ndarray:
        out = np.zeros(max(0, hi - lo), dtype=np.float32)
        if not self.clips:
            return out
        end = np.minimum(self.at + self.length, self.total)
        # reads move forward (with a second or so of look-back for context): clips behind that go
        for gone in [k for k in self.cache if end[k] < lo - self.rate]:
            del self.cache[gone]
        for i in np.flatnonzero((self.at < hi) & (end > lo) & (self.at < self.total)).tolist():
            audio = self._load(i)
            at = int(self.at[i])
            s, e = max(lo, at), min(hi, int(end[i]))
            out[s - lo : e - lo] += audio[s - at : e - at]
        return out


class BackgroundReader:
    """Ranges of a background stem file at the track's rate, zeros past its end (as assemble pads it)."""

    def __init__(self, path: Path, total: int) -> None:
        self.file = sf.SoundFile(str(path))
        self.frames, self.total = int(self.file.frames), total
        self.channels = int(self.file.channels)

    def read(self, lo: int, hi: int) -> np.ndarray:
        out = np.zeros((max(0, hi - lo), self.channels), dtype=np.float32)
        stop = min(hi, self.frames, self.total)
        if stop > lo:
            self.file.seek(lo)
            out[: stop - lo] = self.file.read(stop - lo, dtype="float32", always_2d=True)
        return out

    def close(self) -> None:
        self.file.close()


def ducking_window(dub: PlacedDub, lo: int, hi: int, rate: int, duck_db: float) -> np.ndarray:
    """audio.mix.duck_gain of the whole dialogue track, on samples [lo, hi) only (hops on the track's
    grid, DUCK_REACH_HOPS of context each side, the track's own edges treated as the whole-track
    filters treat them)."""
    hop = duck_hop(rate)
    n_hops = dub.total // hop + 1
    h0, h1 = lo // hop, -(-hi // hop)
    c0, c1 = max(0, h0 - DUCK_REACH_HOPS), min(n_hops, h1 + DUCK_REACH_HOPS)
    samples = dub.read(c0 * hop, min(c1 * hop, dub.total))
    samples = np.pad(np.abs(samples), (0, (c1 - c0) * hop - samples.size))
    per_hop = duck_per_hop(samples.reshape(c1 - c0, hop).max(axis=1), duck_db)
    return np.repeat(per_hop, hop)[lo - c0 * hop : hi - c0 * hop]


# -- the mix ---------------------------------------------------------------------------------------------


@dataclass
class MixSummary:
    channels: int  # of the delivered track
    out_channels: int  # of the chunks handed to the sink (1: every channel the same; the encoder copies)
    gain_db: float  # applied to the dialogue
    integrated_lufs: float  # of the delivered track
    true_peak_dbtp: float


def stream_mix(
    dub: PlacedDub,
    background: BackgroundReader | None,
    rate: int,
    channels: int,
    target_lufs: float,
    sink: Callable[[np.ndarray], None],
    ceiling_dbtp: float = TRUE_PEAK_CEILING_DBTP,
    duck_db: float = 0.0,
    chunk_s: float = CHUNK_S,
) -> MixSummary:
    """audio.mix.render_mix, chunk by chunk: `sink` receives the delivered track's consecutive chunks
    (frames x out_channels float32). Memory: a few chunks' worth, whatever the track's length."""
    total = dub.total
    if not np.isfinite(target_lufs):
        target_lufs = DEFAULT_TARGET_LUFS
    step = max(1, int(chunk_s * rate))
    ducking = background is not None and duck_db > 0

    # pass 1: which signals hold anything, and the sub-block energies that fix the dialogue gain
    kd, kb = KFilter(rate), KFilter(rate)
    ed, eb, ebd = SubblockSums(rate), SubblockSums(rate), SubblockSums(rate)
    any_dub = any_bg = False
    for lo in range(0, total, step):
        hi = min(total, lo + step)
        d = dub.read(lo, hi)
        any_dub = any_dub or bool(np.any(d))
        kdd = kd(d)
        ed.add(kdd, kdd)
        if background is not None:
            b = background.read(lo, hi)
            any_bg = any_bg or bool(np.any(b))
            if ducking:
                b = b * ducking_window(dub, lo, hi, rate, duck_db)[:, None]
            kbb = kb(b)
            eb.add(kbb, kbb)
            ebd.add(kbb, kdd)
    if not any_bg:
        background = None
    ducking = ducking and any_dub and background is not None
    gain_db = 0.0
    if any_dub:
        edc = ed.result(channels)
        if background is None:
            zero = np.zeros_like(edc)
            gain_db = MixLoudness.from_sums(edc, zero, zero, rate).solve_gain_db(target_lufs)
        else:
            bc = background.channels
            gain_db = MixLoudness.from_sums(ed.result(bc), eb.result(bc), ebd.result(bc), rate).solve_gain_db(
                target_lufs
            )
    g = np.float32(10 ** (gain_db / 20))

    # pass 2: render, limit (with the limiter's reach of context), deliver, measure
    reach = limiter_reach(rate)
    meter, peak = LoudnessMeter(rate), TruePeakMeter()
    out_channels = 1 if background is None else background.channels
    for lo in range(0, total, step):
        hi = min(total, lo + step)
        a, z = max(0, lo - reach), min(total, hi + reach)
        d = dub.read(a, z)
        if background is None:
            mix = (d * g)[:, None]
        else:
            b = background.read(a, z)
            if ducking:
                b = b * ducking_window(dub, a, z, rate, duck_db)[:, None]
            mix = b.astype(np.float32, copy=True)
            mix += (d * g)[:, None]
        out = limit_true_peak(mix, ceiling_dbtp, rate=rate, offset=a)[lo - a : hi - a]
        out = np.ascontiguousarray(out, dtype=np.float32)
        sink(out)
        meter.add(out)
        peak.add(out)
    stereo_offset_db = 10 * np.log10(channels) if background is None else 0.0
    return MixSummary(
        channels=channels,
        out_channels=out_channels,
        gain_db=gain_db,
        integrated_lufs=meter.integrated() + stereo_offset_db,
        true_peak_dbtp=peak.dbtp(),
    )
