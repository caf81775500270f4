"""Fast re-runs: with a Prefect server already up (`prefect server start`), the CLI runs its jobs against it
instead of starting a temporary server, and a re-run of a finished job makes no call at all.

Wall time is not asserted (bench/rerun_server.py measures it); what is: the re-run made zero requests to
the service, and both runs were recorded by the running server, so neither started a server of its own."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.prefect_server import REUSE_ENV, server_answers
from tests.loopback_dashscope import LoopbackDashScope

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def running_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A real `prefect server start` on a free port with its own PREFECT_HOME, as a user keeps one up."""
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-home")),
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        REUSE_ENV: "auto",
    }
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 180
        while not server_answers(url):
            assert proc.poll() is None, "prefect server start exited"
            assert time.monotonic() < deadline, "prefect server did not answer"
            time.sleep(0.5)
        yield url, env
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def flow_runs(api_url: str) -> list[dict]:
    request = urllib.request.Request(
        f"{api_url}/flow_runs/filter", data=b"{}", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        return list(json.loads(response.read()))


def test_a_rerun_with_a_server_up_makes_no_call_and_starts_no_server(
    running_server: tuple[str, dict[str, str]], tmp_path: Path, tiny_en_model: Path
) -> None:
    url, env = running_server
    args = [
        sys.executable, "-m", "flows.cli", "media_samples/sample.mp4", "--langs", "ja", "--separator", "none",
        "--asr-model", str(tiny_en_model), "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c"),
    ]  # fmt: skip
    with LoopbackDashScope() as service:
        env = {
            **env,
            "DASHSCOPE_HTTP_BASE_URL": service.base_http_api_url,
            "DASHSCOPE_API_KEY": service.api_key,
        }
        first = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert first.returncode == 0, first.stderr[-3000:]
        assert service.count("tts") > 0
        service.reset()
        again = subprocess.run(  # --force: a flow run, not the up-to-date stamp (tests/test_job_stamp.py)
            [*args, "--force"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
        )  # fmt: skip
        assert again.returncode == 0, again.stderr[-3000:]
        assert service.count() == 0  # the service's own count: the re-run made no call
    dubs = [run for run in flow_runs(url) if run["state_type"] == "COMPLETED"]
    assert len(dubs) == 2  # both jobs ran on the server that was up: neither started its own
    assert "dubbed video:" in again.stdout
