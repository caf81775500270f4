"""Scale-out: `--task-runner dask` without an address runs the job on a LocalCluster of worker processes,
and the DashScope account's global rate limit is on by itself whenever several processes share it.

The job is the real CLI (its own temporary Prefect server, a real LocalCluster of two worker processes)
against the loopback DashScope through the real SDK. Each worker process keeps its own local window of
--rpm requests a minute, so without the shared limit the two would together be allowed twice the
account's rate; the server's request timestamps show that the account's rate held instead.
Timing assertions are upper bounds on requests per window (the limit held), never on wall time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.runners import DASK_WORKERS_ENV, make_task_runner, uses_processes
from models.pacing import GLOBAL_LIMIT_ENV, account_limit_name
from tests.loopback_dashscope import LoopbackDashScope

ROOT = Path(__file__).resolve().parent.parent
RPM = 30  # the account's rate: 0.5 request a second
CONCURRENCY = 2  # the bucket's size: at most this many requests before the refill paces them


def test_dask_without_an_address_is_a_cluster_of_worker_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DASK_WORKERS_ENV, "2")
    runner = make_task_runner("dask", workers=16)
    kwargs = runner.cluster_kwargs  # type: ignore[attr-defined]
    assert kwargs["processes"] is True and kwargs["n_workers"] == 2 and kwargs["threads_per_worker"] == 8
    assert uses_processes("dask") and not uses_processes("thread")
    monkeypatch.delenv(DASK_WORKERS_ENV)
    assert make_task_runner("dask").cluster_kwargs["n_workers"] >= 2  # type: ignore[attr-defined]


def test_a_cluster_whose_workers_are_all_gone_fails_the_job_instead_of_waiting(
    monkeypatch: pytest.MonkeyPatch, prefect_harness: None
) -> None:
    """CI once waited 80 minutes on a local cluster whose worker processes had all died: a task with no
    worker alive now fails after NO_WORKERS_TIMEOUT_S (here 2 s) with Dask's NoWorkerError."""
    import distributed
    from prefect import flow, task

    import flows.runners

    monkeypatch.setattr(flows.runners, "NO_WORKERS_TIMEOUT_S", 2)
    runner = make_task_runner("dask", processes=1)
    runner.cluster_kwargs.update(n_workers=0, processes=False)  # type: ignore[attr-defined]

    @task
    def one() -> int:
        return 1

    @flow(task_runner=runner)  # type: ignore[arg-type]
    def job() -> int:
        return one.submit().result()

    with pytest.raises(distributed.scheduler.NoWorkerError):
        job()


def test_account_limit_name_is_a_digest_of_the_account() -> None:
    name = account_limit_name("tts", "sk-secret-key", "https://host/api/v1")
    assert name.startswith("dashscope-tts-") and "secret" not in name
    assert name == account_limit_name("tts", "sk-secret-key", "https://host/api/v1")
    assert name != account_limit_name("tts", "sk-other", "https://host/api/v1")
    assert name != account_limit_name("mt", "sk-secret-key", "https://host/api/v1")


def subtitles(path: Path, n: int) -> Path:
    truth = json.loads((ROOT / "media_samples" / "sample.truth.json").read_text())
    blocks = []
    for i, s in enumerate(truth["sentences"][:n]):

        def ts(t: float) -> str:
            ms = round(t * 1000)
            return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"

        blocks.append(f"{i + 1}\n{ts(s['start'])} --> {ts(s['end'])}\n{s['text']}\n")
    path.write_text("\n".join(blocks))
    return path


@pytest.mark.e2e
def test_two_worker_processes_keep_the_account_rate(tmp_path: Path) -> None:
    plan = subtitles(tmp_path / "plan.srt", 6)
    out = tmp_path / "out"
    with LoopbackDashScope() as server:
        env = {
            **os.environ,
            "DASHSCOPE_HTTP_BASE_URL": server.base_http_api_url,
            "DASHSCOPE_API_KEY": server.api_key,
            "PREFECT_HOME": str(tmp_path / "prefect-home"),
            "QWENDUB_CACHE_DIR": str(tmp_path / "cache"),
            DASK_WORKERS_ENV: "2",
        }
        for name in ("PREFECT_API_URL", *GLOBAL_LIMIT_ENV.values()):
            env.pop(name, None)
        proc = subprocess.run(
            [sys.executable, "-m", "flows.dub", "media_samples/sample.mp4", "--langs", "ja,ko",
             "--separator", "none", "--subtitles", str(plan), "--out", str(out), "--no-shorten",
             "--task-runner", "dask", "--rpm", str(RPM), "--concurrency", str(CONCURRENCY)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        tts = sorted(r.started_at for r in server.requests_of("tts"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "sample.dubbed.mkv").is_file()
    assert len(tts) == 12  # 6 lines x 2 languages, each paid once
    # A token bucket of CONCURRENCY slots refilled at RPM/60 a second: in any span of d seconds at most
    # CONCURRENCY + d * RPM / 60 requests start (+1 for a refill landing at the span's edge). Two
    # processes pacing only themselves would send all 12 at once (each local window allows RPM).
    for i in range(len(tts)):
        for j in range(i + 1, len(tts)):
            span = tts[j] - tts[i]
            assert j - i + 1 <= CONCURRENCY + span * RPM / 60 + 1, (i, j, span, tts)
    assert tts[-1] - tts[0] >= (len(tts) - CONCURRENCY - 1) * 60 / RPM
