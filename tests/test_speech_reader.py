"""audio/speech_reader.py: the job's speech read a piece at a time at 16 kHz mono. The pieces equal the
whole file read at once (the stages that use it give the same results: the diarizer's turns, the
onset-refined plan, the speakers' estimates), a source at another rate or with two channels is read
through its streamed 16 kHz copy (equal to a one-shot resample of the downmix), and reading a long file
span by span or block by block holds only the pieces (tracemalloc counts numpy's buffers)."""

from __future__ import annotations

import functools
import os
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from audio.speech_reader import RATE, ArrayReader, SpeechReader, excerpt, mono_16k
from tasks.segment import frame_db


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * RATE)) * 0.1).astype(np.float32)


def test_pieces_equal_the_whole_file(tmp_path: Path) -> None:
    audio = noise(7.3)
    path = tmp_path / "analysis.wav"
    sf.write(path, audio, RATE, subtype="FLOAT")
    whole = ArrayReader(audio)
    with SpeechReader(path) as reader:
        assert reader.path == path and reader.size == audio.size  # mono at 16 kHz: read as it is
        for lo, hi in [(0, 10), (-50, 100), (audio.size - 5, audio.size + 7), (1234, 99999)]:
            assert np.array_equal(reader.read(lo, hi), whole.read(lo, hi))
        spans = [(0.5, 1.25), (3.0, 2.0), (6.9, 9.0), (-1.0, 0.1)]
        expected = np.concatenate(
            [audio[max(0, int(a * RATE)) : int(b * RATE)] for a, b in spans if b > a]
        )  # fmt: skip
        assert np.array_equal(excerpt(reader, spans), expected)
        assert np.array_equal(frame_db(reader), frame_db(whole))


def test_other_rates_and_channels_are_read_through_a_streamed_copy(tmp_path: Path) -> None:
    left, right = noise(50.0, 1), noise(50.0, 2)
    stereo = np.stack([soxr.resample(left, RATE, 44_100), soxr.resample(right, RATE, 44_100)], axis=1)
    path = tmp_path / "vocals.wav"
    sf.write(path, stereo, 44_100, subtype="FLOAT")
    one_shot = soxr.resample(stereo.mean(axis=1), 44_100, RATE).astype(np.float32)
    with SpeechReader(path) as reader:
        assert reader.path == tmp_path / "vocals.16k.wav"
        got = reader.read(0, reader.size)
    assert got.size == one_shot.size
    assert np.max(np.abs(got - one_shot)) < 1e-5  # soxr's stream is its one-shot resampler, in pieces
    made = reader.path.stat().st_mtime_ns
    assert mono_16k(path) == reader.path and reader.path.stat().st_mtime_ns == made  # made once
    os.utime(path, ns=(1, 1))  # the source changed: made again
    assert mono_16k(path) == reader.path and reader.path.stat().st_mtime_ns != made


def _long_file(path: Path, minutes: int) -> Path:
    with sf.SoundFile(str(path), "w", samplerate=RATE, channels=1, subtype="PCM_16") as f:
        for i in range(minutes):
            f.write(noise(60.0, i))
    return path


def _peak(call: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_reading_a_long_file_holds_only_its_pieces(tmp_path: Path) -> None:
    """20 minutes are 76.8 MB of float32 samples; what is read stays the size of the pieces."""
    peaks = {}
    for minutes in (5, 20):
        with SpeechReader(_long_file(tmp_path / f"{minutes}.wav", minutes)) as reader:
            spans = [(60.0 * i + 5.0, 60.0 * i + 9.0) for i in range(minutes)]
            wanted = minutes * 4 * RATE * 4  # bytes of the spans themselves
            assert _peak(functools.partial(excerpt, reader, spans)) < 2 * wanted + (1 << 20)
            peaks[minutes] = _peak(functools.partial(frame_db, reader))  # block by block: a fixed working set
            assert frame_db(reader).size == minutes * 6000 - 1
    growth = peaks[20] - peaks[5]  # the levels themselves grow: 100 float32 per second
    assert growth < 3 << 20, f"frame_db grew {growth / 1e6:.1f} MB for 15 more minutes (57.6 MB of samples)"
