"""One separation in a fresh interpreter, for the memory test: prints the resident memory just before
the run and the kernel's high-water mark afterwards, reset just before the run (exact: no sampled peak
is missed, and no heap freed by an earlier run in the same process can hide an allocation).

Usage: python -m tests.separation_memory_child REPO CHUNK_SECONDS WAV OUT_DIR"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from models.demucs_separator import (
    DemucsSeparator,
    current_rss_bytes,
    high_water_rss_bytes,
    release_free_memory,
    reset_peak_rss,
)
from tests.tiny_demucs import TINY_NAME


def main(argv: list[str]) -> None:
    repo, chunk, wav, out = Path(argv[0]), float(argv[1]), Path(argv[2]), Path(argv[3])
    torch.set_num_threads(1)
    separator = DemucsSeparator(TINY_NAME, repo, device="cpu", chunk_seconds=chunk)
    separator.load()
    out.mkdir(parents=True, exist_ok=True)
    release_free_memory()
    if not reset_peak_rss():
        raise SystemExit("cannot reset the peak RSS (/proc/self/clear_refs)")
    before = current_rss_bytes()
    separator.separate(wav, out / "vocals.wav", out / "background.wav")
    print(json.dumps({"rss_before": before, "peak_after": high_water_rss_bytes()}))


if __name__ == "__main__":
    main(sys.argv[1:])
