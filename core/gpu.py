"""Giving GPU memory back between stages.

Separation, recognition and local TTS run one after the other on the same GPU; a model a stage no longer
needs must not sit on the device while the next one loads (on a 24 GB card, Qwen3-TTS 1.7B batches of 128
lines take 21.6 GiB: bench/gpu.py). Off a GPU nothing is released: a served process keeps its CPU models
loaded for the next job.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable


def release_gpu_models(*caches: Callable[[], None], device: str) -> bool:
    """After a stage that ran on `device`: clear the given model caches (an lru_cache's cache_clear) and
    return the freed memory to the driver. True when something was released."""
    if not device.startswith("cuda"):
        return False
    for clear in caches:
        clear()
    gc.collect()
    torch = sys.modules.get("torch")  # only when the stage imported it
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
    return True
