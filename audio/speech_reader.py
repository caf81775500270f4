"""The job's speech as mono float32 at 16 kHz, read a piece at a time: flat memory on a film.

Onset refinement (tasks/segment.py), diarization (models/diarization.py) and speaker measurement
(tasks/cast.py) each read the speech. They used to load it whole: 16 kHz mono float32 is 460 MB for two
hours, the separated vocals at the source rate (48 kHz stereo) 2.8 GB, on top of each stage's own arrays.
They now read blocks and spans through a `SpeechReader`:

- the analysis copy the extract stage writes (16 kHz mono PCM) is read as it is, by seeking;
- any other file (the separated vocals) is converted once, streaming, into a 16 kHz mono float32 WAV
  beside it (`<stem>.16k.wav`, remade only when the source's size or time changes), then read by seeking.
  soxr's streaming resampler is the one-shot `soxr.resample` fed in pieces.

`ArrayReader` gives an in-memory array the same interface (tests, short clips).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol

import numpy as np

from core.files import atomic_path, content_key, is_fresh, mark_fresh

RATE = 16_000  # Hz: what recognition, onset analysis, pitch and the speaker encoder read
CONVERT_BLOCK = 1 << 20  # source frames per streamed block (about 22 s at 48 kHz)


class Samples(Protocol):
    """Mono float32 samples at RATE, by index range; zeros outside [0, size)."""

    @property
    def size(self) -> int: ...

    def read(self, lo: int, hi: int) -> np.ndarray: ...


def excerpt(samples: Samples, spans: Sequence[tuple[float, float]]) -> np.ndarray:
    """The spans (seconds) of `samples`, concatenated in the order given: audio[int(a*RATE):int(b*RATE)]
    each, clipped to the audio as slicing would clip them."""
    pieces = []
    for a, b in spans:
        lo, hi = max(0, int(a * RATE)), min(samples.size, int(b * RATE))
        if hi > lo:
            pieces.append(samples.read(lo, hi))
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


class ArrayReader:
    """An in-memory mono signal at RATE behind the Samples interface."""

    def __init__(self, audio: np.ndarray) -> None:
        mono = audio.mean(axis=1) if audio.ndim > 1 else audio
        self.audio = np.asarray(mono, dtype=np.float32)

    @property
    def size(self) -> int:
        return int(self.audio.size)

    def read(self, lo: int, hi: int) -> np.ndarray:
        out = np.zeros(max(0, hi - lo), dtype=np.float32)
        a, b = max(lo, 0), min(hi, self.audio.size)
        if b > a:
            out[a - lo : b - lo] = self.audio[a:b]
        return out


def _is_mono_at_rate(path: Path) -> bool:
    import soundfile as sf

    info = sf.info(str(path))
    return int(info.samplerate) == RATE and int(info.channels) == 1


def mono_16k(path: Path) -> Path:
    """`path` when it is mono at RATE; else its 16 kHz mono float32 copy beside it, made by streaming
    (read, downmix and resample a block at a time; memory does not grow with the file)."""
    if _is_mono_at_rate(path):
        return path
    import soundfile as sf
    import soxr

    stat = path.stat()
    copy = path.with_name(f"{path.stem}.16k.wav")
    key = content_key("mono-16k-v1", path.name, stat.st_size, stat.st_mtime_ns)
    if is_fresh(copy, key):
        return copy
    with sf.SoundFile(str(path)) as src, atomic_path(copy) as tmp:
        stream = soxr.ResampleStream(float(src.samplerate), float(RATE), 1, dtype="float32")
        with sf.SoundFile(str(tmp), "w", samplerate=RATE, channels=1, subtype="FLOAT", format="WAV") as dst:
            while True:
                block = src.read(CONVERT_BLOCK, dtype="float32", always_2d=True)
                last = block.shape[0] < CONVERT_BLOCK
                mono = np.ascontiguousarray(block.mean(axis=1), dtype=np.float32)
                dst.write(stream.resample_chunk(mono, last=last))
                if last:
                    break
    mark_fresh(copy, key)
    return copy


class SpeechReader:
    """A speech file as mono float32 at RATE, read by index range (see the module docstring). A context
    manager; one per thread (the file handle seeks)."""

    def __init__(self, path: Path) -> None:
        import soundfile as sf

        self.path = mono_16k(path)
        self._file = sf.SoundFile(str(self.path))
        self._size = int(self._file.frames)

    @property
    def size(self) -> int:
        return self._size

    @property
    def duration(self) -> float:
        return self._size / RATE

    def read(self, lo: int, hi: int) -> np.ndarray:
        out = np.zeros(max(0, hi - lo), dtype=np.float32)
        a, b = max(lo, 0), min(hi, self._size)
        if b > a:
            self._file.seek(a)
            got = self._file.read(b - a, dtype="float32", always_2d=True)[:, 0]
            out[a - lo : a - lo + got.size] = got
        return out

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> SpeechReader:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
