"""Random-weight HTDemucs models saved as a local demucs repository, for tests and measurements.

No pretrained weights can be downloaded here, so the tests build an HTDemucs with the real model's
interface (sources drums/bass/other/vocals, 2 channels, 44.1 kHz, nfft 4096, depth 4) but few
channels, one transformer layer and a 2 s segment, and save it the way demucs' LocalRepo expects
(`<name>.th` holding klass/args/kwargs/state, optional `<bag>.yaml`). The separator then loads it
through `demucs.pretrained.get_model(name, repo=dir)`, the real loading code.

`full_size_kwargs()` gives the released htdemucs' hyper-parameters as far as demucs' grids tell them
(42 M parameters), for measuring speed and memory with random weights.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

SOURCES = ["drums", "bass", "other", "vocals"]
TINY_NAME = "tiny_htdemucs"
TINY_BAG = "tiny_bag"


def tiny_kwargs() -> dict[str, Any]:
    """About 0.1 M parameters; RTF about 0.1 on one CPU core. A 2 s segment instead of 7.8 s keeps the
    transformer's attention small; the chunking code is generic in the segment length."""
    return {
        "sources": list(SOURCES),
        "audio_channels": 2,
        "samplerate": 44100,
        "segment": Fraction(2),
        "channels": 4,
        "depth": 4,
        "t_layers": 1,
        "t_heads": 4,
        "t_hidden_scale": 1.0,
        "dconv_mode": 3,
        "dconv_comp": 2,
    }


def full_size_kwargs(bottom_channels: int = 512) -> dict[str, Any]:
    """The released 'htdemucs' (signature 955717e8) as inferred from demucs/grids/mmi.py
    (dconv_mode=3, depth=4, t_layers=5) plus HTDemucs defaults; segment 7.8 s."""
    return {
        "sources": list(SOURCES),
        "audio_channels": 2,
        "samplerate": 44100,
        "segment": Fraction(39, 5),
        "dconv_mode": 3,
        "depth": 4,
        "t_layers": 5,
        "t_dropout": 0.02,
        "bottom_channels": bottom_channels,
    }


def save_model(directory: Path, name: str, kwargs: dict[str, Any], seed: int = 0) -> Path:
    """Build an HTDemucs with random weights (seeded) and save it as `<directory>/<name>.th`."""
    import torch
    from demucs.htdemucs import HTDemucs

    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = HTDemucs(**kwargs).eval()
    path = directory / f"{name}.th"
    torch.save({"klass": HTDemucs, "args": (), "kwargs": kwargs, "state": model.state_dict()}, path)
    return path


def build_tiny_repo(directory: Path, seed: int = 0) -> Path:
    """`tiny_htdemucs.th` plus `tiny_bag.yaml`, a bag holding that one model (exercises BagOfModels)."""
    save_model(directory, TINY_NAME, tiny_kwargs(), seed)
    (directory / f"{TINY_BAG}.yaml").write_text(f"models: ['{TINY_NAME}']\n")
    return directory


def write_test_wav(path: Path, seconds: float, rate: int, channels: int, seed: int = 0) -> Path:
    """Float WAV of tones and noise bursts (left and right differ), deterministic for a seed."""
    rng = np.random.default_rng(seed)
    n = round(seconds * rate)
    t = np.arange(n) / rate
    mono = 0.2 * np.sin(2 * np.pi * 220.0 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.3 * t))
    mono += 0.1 * np.sin(2 * np.pi * 1375.0 * t + 2.0 * np.sin(2 * np.pi * 3.0 * t))
    mono += 0.05 * rng.standard_normal(n) * (np.sin(2 * np.pi * 0.7 * t) > 0.3)
    if channels == 1:
        data = mono[:, None]
    else:
        right = 0.8 * np.roll(mono, 37) + 0.03 * rng.standard_normal(n)
        data = np.stack([mono, right] + [mono] * (channels - 2), axis=1)
    sf.write(str(path), data.astype(np.float32), rate, subtype="FLOAT")
    return path
