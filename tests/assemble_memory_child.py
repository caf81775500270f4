"""One track assembly (placement, mix over a stereo background with ducking, AAC encoding from a pipe)
in a fresh interpreter, for the memory test: prints the resident memory just before the assembly and
the kernel's high-water mark after it, reset just before it (exact: no sampled peak is missed).

Usage: python -m tests.assemble_memory_child SECONDS WORK_DIR"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from models.demucs_separator import (
    current_rss_bytes,
    high_water_rss_bytes,
    release_free_memory,
    reset_peak_rss,
)
from tasks.assemble import stream_track
from tasks.line import FittedClip
from tasks.translate import TranslatedLine

RATE, CLIP_RATE = 48_000, 24_000


def inputs(seconds: float, work: Path) -> tuple[list[TranslatedLine], list[FittedClip], Path]:
    """A fitted clip of 1-2.5 s every ~3 s, and a stereo noise bed written block by block."""
    rng = np.random.default_rng(1)
    lines, fits, start = [], [], 0.4
    while start < seconds - 3.0:
        n = int(rng.uniform(1.0, 2.5) * CLIP_RATE)
        t = np.arange(n) / CLIP_RATE
        clip = (0.4 * np.sin(2 * np.pi * 170 * t) * (0.6 - 0.4 * np.cos(2 * np.pi * 4 * t))).astype(
            np.float32
        )
        path = work / f"fit-{len(fits):05d}.wav"
        sf.write(str(path), clip, CLIP_RATE, subtype="FLOAT")
        fits.append(FittedClip(str(path), CLIP_RATE, 1.0, 0.0, n / CLIP_RATE))
        lines.append(TranslatedLine(len(lines), start, start + n / CLIP_RATE, 0.4, "", ""))
        start += n / CLIP_RATE + rng.uniform(0.4, 1.2)
    background = work / "background.wav"
    with sf.SoundFile(str(background), "w", RATE, 2, "FLOAT") as f:
        for _ in range(int(seconds / 10)):
            f.write((0.05 * rng.standard_normal((10 * RATE, 2))).astype(np.float32))
    return lines, fits, background


def main(argv: list[str]) -> None:
    seconds, work = float(argv[0]), Path(argv[1])
    work.mkdir(parents=True, exist_ok=True)
    lines, fits, background = inputs(seconds, work)
    total = int(seconds * RATE)
    release_free_memory()
    if not reset_peak_rss():
        raise SystemExit("cannot reset the peak RSS (/proc/self/clear_refs)")
    before = current_rss_bytes()
    mix, timings = stream_track(
        lines, fits, background, RATE, 2, total, -20.0, 6.0, "aac", work / "dub.mka", None, work
    )
    peak = high_water_rss_bytes()
    print(
        json.dumps(
            {"rss_before": before, "peak_after": peak, "lufs": mix.integrated_lufs, "lines": len(timings)}
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
