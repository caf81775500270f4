"""ffprobe/ffmpeg helpers the tests use to inspect outputs as a user's player would."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np


def ffprobe_streams(path: Path) -> list[dict]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", "-show_format", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return json.loads(out)["streams"]


def ffprobe_format(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return json.loads(out)["format"]


def video_packet_hashes(path: Path) -> list[str]:
    """MD5 of every packet of the first video stream, copied out without decoding."""
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "framemd5", "-"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return [ln.rsplit(",", 1)[-1].strip() for ln in out.splitlines() if ln and not ln.startswith("#")]


def decode_audio_stream(path: Path, audio_index: int, rate: int = 48000, channels: int = 1) -> np.ndarray:
    """The audio stream `audio_index` (0-based among audio streams) as float32 at `rate`: mono
    (frames,) by default, or frames x channels."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", f"0:a:{audio_index}", "-ac", str(channels),
         "-ar", str(rate), "-f", "f32le", "-"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    samples = np.frombuffer(raw, dtype="<f4")
    return samples if channels == 1 else samples.reshape(-1, channels)


def rms_db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12))
