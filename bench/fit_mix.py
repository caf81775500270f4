"""Fit + mix + encode cost per language on a generated 10-minute job (no model inference).

    python -m bench.fit_mix [--minutes 10] [--clips 150]

Input: ~150 espeak-ng English clips at 24 kHz (what a TTS engine delivers), with slots chosen so that
about a third of them are longer than their slot and get time-stretched (some past the 1.25 cap, so
truncated); a 48 kHz stereo job of --minutes. Each scenario (no background / a stereo noise-and-tones
bed of the full length) runs in a fresh process, so its peak RSS is its own:

- fit: tasks.assemble.assemble_track minus its render_mix call: reading each clip, trimming, Rubber
  Band R3 stretching (shown apart), resampling to 48 kHz (shown apart), placing;
- mix: render_mix (loudness solve at the target, true-peak limiting, final measurement);
- encode: tasks.media.encode_audio, AAC and Opus separately (ffmpeg's CPU time included);
- task: the whole assemble stage (tasks.assemble.assemble.fn: background WAV read, fit, mix, encode,
  subtitles) end to end, per codec.

RTF = wall seconds / programme seconds. The quality spec asks <= 0.02 per language for everything
that is not model inference, on 2 cores. A short warm-up (library imports) runs before the timings.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import inspect
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

RATE, CHANNELS, CLIP_RATE = 48_000, 2, 24_000
TARGET_LUFS, MAX_SPEEDUP = -23.0, 1.25
SENTENCES = [
    "The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.", "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.", "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.", "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.", "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.", "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.", "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.", "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.", "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.", "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock, and the fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest before the guests arrive for dinner tonight.",
    "The swan dive was far short of perfect.", "The beauty of the view stunned the young boy.",
    "Two blue fish swam in the tank.", "Her purse was full of useless trash.",
    "The colt reared and threw the tall rider.", "It snowed, rained, and hailed the same morning.",
    "Read verse out loud for pleasure.", "Hoist the load to your left shoulder.",
]  # fmt: skip
VOICES = ["en-us", "en-gb", "en-us+f3", "en-gb-x-rp"]


# -- inputs (parent process) -------------------------------------------------------------------------


def build_inputs(work: Path, minutes: float, n_clips: int, seed: int = 7) -> Path:
    """Clips as 24 kHz WAVs, and a manifest of lines (slots) and clip records."""
    from audio.fit import trim_silence

    rng = np.random.default_rng(seed)
    clips_dir = work / "clips"
    clips_dir.mkdir(parents=True, exist_ok=True)
    records, durations, texts = [], [], []
    for i in range(n_clips):
        text = SENTENCES[i % len(SENTENCES)]
        raw = clips_dir / f"{i:04d}.espeak.wav"
        voice, speed = VOICES[i % len(VOICES)], str(int(rng.integers(145, 185)))
        subprocess.run(["espeak-ng", "-v", voice, "-s", speed, "-w", str(raw), text], check=True)
        audio, src = sf.read(raw, dtype="float32")
        raw.unlink()
        audio = np.asarray(soxr.resample(audio, src, CLIP_RATE), dtype=np.float32)
        path = clips_dir / f"{i:04d}.wav"
        sf.write(path, audio, CLIP_RATE, subtype="PCM_16")
        records.append({"index": i, "path": str(path), "sample_rate": CLIP_RATE,
                        "duration": audio.size / CLIP_RATE, "billed_characters": len(text),
                        "attempts": 1, "cached": False})  # fmt: skip
        durations.append(trim_silence(audio, CLIP_RATE).size / CLIP_RATE)
        texts.append(text)
    # a third of the clips are longer than their slot (need 1.05-1.4x; past 1.25 they are truncated)
    slots = [
        d / rng.uniform(1.05, 1.4) if i % 3 == 0 else d * rng.uniform(1.02, 1.5)
        for i, d in enumerate(durations)
    ]
    total = minutes * 60
    spare = total - 1.0 - sum(slots)
    if spare <= 0:
        raise SystemExit(f"{n_clips} clips do not fit in {minutes} min; use fewer clips or more minutes")
    gaps = rng.dirichlet(np.full(n_clips, 2.0)) * spare
    lines, t = [], 0.5
    for i, (slot, gap) in enumerate(zip(slots, gaps, strict=True)):
        t += gap
        lines.append({"index": i, "start": round(t, 3), "end": round(t + 0.85 * slot, 3),
                      "pause_after": round(0.15 * slot, 3), "source": "", "text": texts[i]})  # fmt: skip
        t += slot
    sf.write(work / "background.wav", background_bed(total, RATE), RATE, subtype="FLOAT")
    manifest = work / "manifest.json"
    manifest.write_text(json.dumps({"seconds": total, "lines": lines, "clips": records}))
    return manifest


def background_bed(seconds: float, rate: int, seed: int = 3) -> np.ndarray:
    """A stereo bed: low-passed noise plus slowly changing tones, about -28 dBFS RMS, float32."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    bed = np.empty((n, 2), dtype=np.float32)
    t = np.arange(n, dtype=np.float32) / rate
    tones = np.zeros(n, dtype=np.float32)
    for k, freq in enumerate((110.0, 164.8, 220.0, 329.6)):
        tones += (
            0.02 * (1 + np.sin(2 * np.pi * (0.05 + 0.03 * k) * t)) * np.sin(2 * np.pi * freq * t)
        ).astype(np.float32)
    for c in range(2):
        noise = lfilter([0.05], [1, -0.95], rng.standard_normal(n).astype(np.float32)).astype(np.float32)
        bed[:, c] = 0.2 * noise + tones
    return bed


# -- one scenario (child process) --------------------------------------------------------------------


class Timer:
    """Wraps a function and sums the wall and CPU time spent in it."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn, self.wall, self.cpu = fn, 0.0, 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.wall += time.perf_counter() - t0
            self.cpu += time.process_time() - c0


def memory_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, from /proc. Not ru_maxrss: a
    child's ru_maxrss counts the parent's pages it held between fork and exec."""
    for row in Path("/proc/self/status").read_text().splitlines():
        if row.startswith(field + ":"):
            return int(row.split()[1]) / 1024
    return float("nan")


def reset_peak_memory() -> None:
    """Start VmHWM again from the current RSS (Linux >= 4.0)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """Result, wall seconds, CPU seconds (this process's threads and its children)."""
    c0, t0 = time.process_time() + children_cpu(), time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0, time.process_time() + children_cpu() - c0


def run_scenario(manifest_path: Path, with_background: bool) -> dict[str, Any]:
    import audio.fit as fit_mod
    import tasks.assemble as assemble_mod
    from tasks.media import encode_audio
    from tasks.synthesize import ClipRecord
    from tasks.translate import TranslatedLine

    manifest = json.loads(manifest_path.read_text())
    seconds = manifest["seconds"]
    lines = [TranslatedLine(**line) for line in manifest["lines"]]
    clips = [ClipRecord(**clip) for clip in manifest["clips"]]
    total = int(round(seconds * RATE))
    work = Path(tempfile.mkdtemp(prefix="fitmix-", dir=manifest_path.parent))
    background, background_wav = None, None
    if with_background:  # written by the parent: the peak RSS here is not the bed's generation
        background_wav = manifest_path.parent / "background.wav"
        background, _ = assemble_mod.read_audio(background_wav)

    # warm-up: imports and first-call setup of pylibrb, soxr, pyloudnorm/scipy
    warm = np.sin(np.arange(RATE) * 0.05).astype(np.float32)
    fit_mod.time_stretch(warm, CLIP_RATE, 1.2)
    assemble_mod.resample(warm, CLIP_RATE, RATE)
    assemble_mod.render_mix(warm, None if background is None else background[:RATE], RATE, CHANNELS, -23.0)
    rss_inputs_mb = memory_mb("VmRSS")
    reset_peak_memory()

    stretch, resample, mix = (
        Timer(fit_mod.time_stretch), Timer(assemble_mod.resample), Timer(assemble_mod.render_mix)
    )  # fmt: skip
    fit_mod.time_stretch, assemble_mod.resample, assemble_mod.render_mix = stretch, resample, mix
    try:
        track = functools.partial(
            assemble_mod.assemble_track, lines, clips, background, RATE, CHANNELS, total, TARGET_LUFS,
            MAX_SPEEDUP,
        )  # fmt: skip
        (mixed, timings), assemble_s, assemble_cpu = measure(track)
    finally:
        fit_mod.time_stretch, assemble_mod.resample, assemble_mod.render_mix = (
            stretch.fn, resample.fn, mix.fn
        )  # fmt: skip
    out: dict[str, Any] = {
        "background": with_background,
        "seconds": seconds,
        "lines": len(timings),
        "stretched": sum(t.speed > 1.0 for t in timings),
        "truncated": sum(t.truncated_s > 0 for t in timings),
        "fit": (assemble_s - mix.wall, assemble_cpu - mix.cpu),
        "stretch": (stretch.wall, stretch.cpu),
        "resample": (resample.wall, resample.cpu),
        "mix": (mix.wall, mix.cpu),
        "lufs": round(mixed.integrated_lufs, 2),
        "true_peak": round(mixed.true_peak_dbtp, 2),
    }
    audio, channels = mixed.audio, mixed.channels
    for codec in ("aac", "opus"):
        encode = functools.partial(encode_audio, audio, RATE, work / f"dub.{codec}.mka", codec, channels)
        _, wall, cpu = measure(encode)
        out[f"encode_{codec}"] = (wall, cpu)
    out["rss_inputs_mb"] = rss_inputs_mb
    out["peak_rss_mb"] = memory_mb("VmHWM")  # ffmpeg, a process of its own, is not in it
    del mixed, audio, background, track
    task_params = inspect.signature(assemble_mod.assemble.fn).parameters
    for codec in ("aac", "opus"):

        def task(codec: str = codec) -> Any:
            kwargs: dict[str, Any] = dict(
                lang_code="en", lines=lines, clips=clips, background_wav=background_wav, rate=RATE,
                channels=CHANNELS, duration=seconds, target_lufs=TARGET_LUFS, max_speedup=MAX_SPEEDUP,
                audio_codec=codec, audio_out=work / f"task.{codec}.mka", srt_path=work / f"task.{codec}.srt",
                vtt_path=work / f"task.{codec}.vtt",
            )  # fmt: skip
            if "background_key" in task_params:  # the stage's content key for the background stem
                kwargs["background_key"] = f"bench-background-{with_background}"
            return assemble_mod.assemble.fn(**kwargs)

        reset_peak_memory()
        _, wall, cpu = measure(task)
        if codec == "aac":
            out["task_peak_rss_mb"] = memory_mb("VmHWM")
        out[f"task_{codec}"] = (wall, cpu)
    return out


# -- report ------------------------------------------------------------------------------------------


def report(results: list[dict[str, Any]]) -> None:
    first = results[0]
    minutes, clips, seconds = first["seconds"] / 60, first["lines"], first["seconds"]
    print(f"job: {minutes:.0f} min, {RATE} Hz stereo, {clips} clips at {CLIP_RATE} Hz, "
          f"{first['stretched']} stretched ({first['truncated']} past the {MAX_SPEEDUP} cap, truncated); "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print("RTF = seconds / programme seconds; budget: <= 0.02 per language. CPU = this process's threads")
    print("plus ffmpeg's: on an idle 2-core machine the wall time is about that or less.")
    rows = [
        ("fit (read, trim, stretch, resample, place)", "fit"),
        ("  of which Rubber Band R3 stretch", "stretch"),
        ("  of which resample 24k->48k (soxr)", "resample"),
        ("mix (loudness solve, true-peak limit, measure)", "mix"),
        ("encode AAC 192k", "encode_aac"),
        ("encode Opus 128k", "encode_opus"),
    ]
    for r in results:
        print(f"\n{'with a stereo background bed' if r['background'] else 'no background (mono mix path)'}")
        print(f"{'step':<48}{'wall s':>8}{'CPU s':>8}{'RTF wall':>10}{'RTF CPU':>9}")

        def line(label: str, wall: float, cpu: float) -> None:
            print(f"{label:<48}{wall:>8.2f}{cpu:>8.2f}{wall / seconds:>10.4f}{cpu / seconds:>9.4f}")

        for label, key in rows:
            line(label, *r[key])
        for codec in ("aac", "opus"):
            parts = [r["fit"], r["mix"], r[f"encode_{codec}"]]
            line(f"fit + mix + encode {codec} (sum)", sum(p[0] for p in parts), sum(p[1] for p in parts))
        for codec in ("aac", "opus"):
            line(f"assemble task end to end, {codec}", *r[f"task_{codec}"])
        print(f"RSS MB: inputs held {r['rss_inputs_mb']:.0f}, peak fit+mix+encode {r['peak_rss_mb']:.0f}, "
              f"peak assemble task {r['task_peak_rss_mb']:.0f} (ffmpeg not included)")  # fmt: skip
        print(f"mix: {r['lufs']:.2f} LUFS, true peak {r['true_peak']:.2f} dBTP")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clips", type=int, default=150)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--background", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_scenario(args.child, args.background)))
        return
    with tempfile.TemporaryDirectory(prefix="bench-fitmix-") as tmp:
        t0 = time.perf_counter()
        manifest = build_inputs(Path(tmp), args.minutes, args.clips)
        print(f"(inputs generated in {time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        results = []
        for with_background in (False, True):
            cmd = [sys.executable, "-m", "bench.fit_mix", "--child", str(manifest)]
            cmd += ["--background"] if with_background else []
            root = Path(__file__).resolve().parent.parent
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=root)
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    report(results)


if __name__ == "__main__":
    main()
