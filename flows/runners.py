"""How the `dub` flow runs: its task runner, a thread pool (default) or Dask (prefect-dask), chosen by flag
or by environment so a deployment's work pool can switch without a code change; and its run's name.

Importing this module imports nothing heavy (Prefect is imported when a runner is built).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - typing only
    from prefect.task_runners import TaskRunner

TASK_RUNNER_ENV = "QWENDUB_TASK_RUNNER"  # thread (default) | dask
RUNNER_KINDS = ("thread", "dask")
DASK_ADDRESS_ENV = "QWENDUB_DASK_ADDRESS"  # tcp://scheduler:8786; unset: a local cluster per flow run
DASK_WORKERS_ENV = "QWENDUB_DASK_WORKERS"  # worker processes of that local cluster
NO_WORKERS_TIMEOUT_S = 300  # a local cluster's task waits this long with no worker alive, then fails
# Threads for the flow's tasks: per-line tasks are mostly waiting on the API (its pacing lives in the
# adapters, shared by the process), so this only needs to cover --concurrency plus the languages.
TASK_WORKERS = 16


def local_worker_processes() -> int:
    """Worker processes of a local Dask cluster: $QWENDUB_DASK_WORKERS, else one per two CPUs, 2 to 4 (a
    job's heavy work is the separation and recognition before the per-line tasks, which wait on the API
    or a device, so more processes would mostly add memory)."""
    given = os.environ.get(DASK_WORKERS_ENV, "").strip()
    if given:
        if not given.isdigit() or int(given) < 1:
            raise ValueError(f"${DASK_WORKERS_ENV}: expected a whole number ≥ 1, not {given!r}")
        return int(given)
    return min(4, max(2, (os.cpu_count() or 2) // 2))


def uses_processes(kind: str | None = None, address: str | None = None) -> bool:
    """Whether the chosen runner runs tasks in more than this process (any Dask runner: a local cluster
    of worker processes or a scheduler's workers), so several processes share the DashScope account."""
    address = address or os.environ.get(DASK_ADDRESS_ENV) or None
    kind = (kind or os.environ.get(TASK_RUNNER_ENV) or ("dask" if address else "thread")).strip().lower()
    return kind == "dask"


def make_task_runner(
    kind: str | None = None,
    address: str | None = None,
    workers: int = TASK_WORKERS,
    processes: int | None = None,
) -> TaskRunner:
    """The task runner for the flow's parallel work: per-language stages (translate, assemble) and
    per-line tasks (synthesis, shortening, fitting).

    thread: a thread pool in the flow-run process (the default; API-bound stages need nothing more).
    dask:   prefect-dask's DaskTaskRunner, on the scheduler at `address`, or, when no address is given, on
            a temporary LocalCluster of `processes` worker processes (default: local_worker_processes())
            sharing `workers` threads. Several processes share one DashScope account then: the CLI turns
            the account's global rate limit on (models/pacing.py, share_account_limits).
    `kind` and `address` default to $QWENDUB_TASK_RUNNER and $QWENDUB_DASK_ADDRESS, so a work pool's
    job variables can choose the runner for deployed runs without a code change; an address alone means
    dask.
    """
    address = address or os.environ.get(DASK_ADDRESS_ENV) or None
    kind = (kind or os.environ.get(TASK_RUNNER_ENV) or ("dask" if address else "thread")).strip().lower()
    if kind == "thread":
        if address:
            raise ValueError("--dask-address needs --task-runner dask")
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=workers)
    if kind == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError as exc:  # an optional extra: say what to install
            raise ValueError("--task-runner dask needs prefect-dask (pip install prefect-dask)") from exc
        if address:
            return DaskTaskRunner(address=address)
        n = processes or local_worker_processes()
        import dask

        # Worker processes that all die and are not restarted (one once failed importing the flow's
        # modules) would leave every task unrunnable and the job waiting forever: fail it instead.
        dask.config.set({"distributed.scheduler.no-workers-timeout": f"{NO_WORKERS_TIMEOUT_S}s"})
        return DaskTaskRunner(
            cluster_kwargs={
                "n_workers": n,
                "threads_per_worker": max(1, -(-workers // n)),  # the same threads, spread over them
                "processes": True,
                "dashboard_address": None,
                "preload": ["flows.dask_worker"],  # its console follows the CLI's (flows/dask_worker.py)
            }
        )
    raise ValueError(f"unknown task runner {kind!r}: expected {' or '.join(RUNNER_KINDS)}")


def flow_run_name() -> str:
    """`dub-<video stem>`, from the run's `config`: a DubConfig when the CLI or Python calls the flow, the
    JSON object a deployment run receives (the flow validates it itself, see flows/dub.py), or anything
    else when that is malformed (then just `dub`)."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    config = (context.parameters or {}).get("config") if context is not None else None
    video = config.get("video") if isinstance(config, dict) else getattr(config, "video", None)
    stem = Path(str(video)).stem if isinstance(video, str | Path) and str(video) else ""
    return f"dub-{stem}" if stem else "dub"
