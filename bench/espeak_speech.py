"""What the voice-print benchmarks share: Harvard sentences spoken by espeak-ng voices, and recordings
made to sound like a video's soundtrack (room echo, noise)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

SENTENCES = [
    "The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.", "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.", "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.", "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.", "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.", "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.", "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.", "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.", "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.", "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.", "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.", "The swan dive was far short of perfect.",
    "The beauty of the view stunned the young boy.", "Two blue fish swam in the tank.",
    "Her purse was full of useless trash.", "The colt reared and threw the tall rider.",
    "It snowed, rained, and hailed the same morning.", "Read verse out loud for pleasure.",
    "Hoist the load to your left shoulder.", "Take the winding path to reach the lake.",
]  # fmt: skip


def speak(voice: str, text: str, out: Path, speed: int) -> tuple[np.ndarray, int]:
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(out), text], check=True)
    audio, rate = sf.read(str(out), dtype="float32")
    return np.asarray(audio), int(rate)


def video_like(
    audio: np.ndarray, rate: int, noise_db: float, seed: int, out_rate: int = 24_000
) -> tuple[np.ndarray, int]:
    """`audio` as a video's soundtrack would give it: resampled to `out_rate`, a short room echo, noise
    `noise_db` below the speech."""
    import soxr

    rng = np.random.default_rng(seed)
    out = soxr.resample(audio, rate, out_rate).astype(np.float32)
    rate = out_rate
    echo = np.zeros(int(0.05 * rate), dtype=np.float32)
    echo[0], echo[int(0.013 * rate)], echo[-1] = 1.0, 0.35, 0.15
    out = np.convolve(out, echo)[: out.size].astype(np.float32)
    white = rng.standard_normal(out.size).astype(np.float32)
    pinkish = np.convolve(white, np.ones(8, dtype=np.float32) / 8, mode="same")
    speech_rms = float(np.sqrt(np.mean(out[np.abs(out) > 0.01] ** 2)))
    noise = pinkish / max(float(np.sqrt(np.mean(pinkish**2))), 1e-9) * speech_rms * 10 ** (-noise_db / 20)
    return np.asarray(out + noise, dtype=np.float32), rate
