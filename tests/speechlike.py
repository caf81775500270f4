"""A deterministic speech-like test signal (no recording needed)."""

from __future__ import annotations

import numpy as np


def speechlike(seconds: float, rate: int, level: float = 0.3, f0: float = 160.0) -> np.ndarray:
    """Five harmonics of f0 under a 4 Hz syllable envelope (15-100 %), peaking at `level`."""
    t = np.arange(int(seconds * rate)) / rate
    tone = sum(0.6 ** (k - 1) * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 6))
    envelope = 0.15 + 0.85 * 0.5 * (1 - np.cos(2 * np.pi * 4.0 * t))
    return np.asarray(tone / np.max(np.abs(tone)) * envelope * level, dtype=np.float32)
