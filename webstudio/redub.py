"""Re-dub from the studio: the cost of exactly what changed, then the job's own `dub` flow as a Prefect
flow run (visible in the Prefect UI of the server this process talks to), with its progress.

The re-dub runs the flow with the options the job last ran with (work/config.json) and the job's own
segments.json as its plan, so the edits in the job folder are the input and nothing else changes: the
flow re-does only what changed (clips are cached by voice, language and text) and holds the job's lock
while it runs, so the studio refuses edits until it has finished.

Where it runs: in a thread of the studio's process by default; with a deployment configured
(`--deployment dub/dub-cpu` or $QWENDUB_STUDIO_DEPLOYMENT) as a run of that deployment, started with
Prefect's `run_deployment` (config: the recorded options as JSON) and executed by whatever serves it (a
`python -m flows.serve` process or a worker of its pool, which must see the job folder at the same path);
the studio then polls the run's state, task runs and logs for the page's progress. The flow run takes the
job's lock itself (flows/dub.py), so the studio never holds it.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from core.config import DubConfig
from core.errors import DubError
from core.job_lock import lock_holder
from webstudio.job import StudioError, StudioJob

POLL_S = 1.0  # how often a deployment run's state, task runs and logs are read
_PROGRESS = re.compile(r"progress stage=synthesize-(\w+) done=(\d+)/(\d+)_lines")


def redub_config(job: StudioJob) -> DubConfig:
    """The job's recorded options, pointed at this job folder and its own plan (an earlier --segments or
    --subtitles file would otherwise replace the edited plan)."""
    config = job.run_config()
    return config.model_copy(
        update={"out": job.root, "segments": job.root / "segments.json", "subtitles": None, "dry_run": False}
    )


def estimate(job: StudioJob) -> dict[str, Any]:
    """What a re-dub would synthesise and cost now, per language: the project's own estimate
    (tasks/estimate.estimate_language) over the job's plan, its cast and its edited translations."""
    from core.config import CLONE_EVERY_LINE
    from core.errors import ConfigError
    from core.languages import Language, get_language
    from tasks.cast import decide_cast, read_cast
    from tasks.estimate import estimate_language

    config = redub_config(job)
    source_lang, lines = job.plan()
    try:
        source: Language | None = get_language(source_lang)
    except ConfigError:
        source = None
    try:
        clone = None
        if config.clone_speakers:
            from cloning.session import CloneSession

            clone = CloneSession.open(config)
        if CLONE_EVERY_LINE not in config.clone_speakers and config.voice_design is None:
            # the cast a run would decide from cast.json (no audio is measured: earlier picks are kept)
            config = decide_cast(config, lines, {}, read_cast(job.root / "cast.json")).apply(config)
        estimates = [
            estimate_language(lines, source, get_language(code), config, clone) for code in config.langs
        ]
    except DubError as exc:
        raise StudioError(f"cannot estimate: {exc}", 422) from None
    review = job.review()
    changed: dict[str, int] = {str(code): len(review["changed"].get(code, [])) for code in config.langs}
    total = sum(e.cost for e in estimates)
    return {
        "languages": [{**asdict(e), "changed_lines": changed.get(e.language, 0)} for e in estimates],
        "characters": sum(e.characters for e in estimates),
        "lines_to_synthesize": sum(e.lines_to_synthesize for e in estimates),
        "cost": round(total, 6),
        "currency": estimates[0].currency if estimates else "",
    }


@dataclass
class RedubRun:
    state: str = "idle"  # idle, running, completed, failed
    started: float | None = None
    finished: float | None = None
    message: str = ""
    flow_run_id: str | None = None
    flow_run_name: str | None = None
    stage: str | None = None
    progress: dict[str, list[int]] = field(default_factory=dict)  # language -> [done, total] lines


def read_progress(run: RedubRun, message: str) -> None:
    """A `progress stage=synthesize-<lang> done=N/M_lines` log line -> run.progress (the caller locks)."""
    found = _PROGRESS.search(message)
    if found:
        run.progress[found.group(1)] = [int(found.group(2)), int(found.group(3))]


class _RunWatcher(logging.Handler):
    """Reads the run's own log records (no text in them: the project never logs script text) for the
    flow run id, the current task run and the per-language synthesis progress."""

    def __init__(self, run: RedubRun, lock: threading.Lock) -> None:
        super().__init__(logging.INFO)
        self.run, self.state_lock = run, lock  # not `lock`: logging.Handler's own

    def emit(self, record: logging.LogRecord) -> None:
        with self.state_lock:
            flow_run_id = getattr(record, "flow_run_id", None)
            if flow_run_id and not self.run.flow_run_id:
                self.run.flow_run_id = str(flow_run_id)
                self.run.flow_run_name = str(getattr(record, "flow_run_name", "") or "") or None
            task_run = getattr(record, "task_run_name", None)
            if task_run:
                self.run.stage = str(task_run)
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - a record that cannot format is not progress
                return
            read_progress(self.run, message)


class Redubber:
    """One re-dub at a time: the flow in a thread of the studio's process (the flow run belongs to the
    Prefect API this process is configured for; without one, Prefect starts a temporary local server),
    or, with `deployment` ("flow/deployment"), a run of that deployment watched from a thread."""

    def __init__(self, job: StudioJob, deployment: str | None = None) -> None:
        self.job = job
        self.deployment = deployment
        self.run = RedubRun()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def status(self) -> dict[str, Any]:
        with self._lock:
            return asdict(self.run)

    def start(self) -> dict[str, Any]:
        with self._lock:
            if self.run.state == "running":
                raise StudioError("a re-dub is already running", 409)
            holder = lock_holder(self.job.root)
            if holder is not None:
                raise StudioError(holder["message"], 423)
            config = redub_config(self.job)
            self.run = RedubRun(state="running", started=time.time(), message="starting the flow run")
            work = self._work_deployment if self.deployment else self._work
            self._thread = threading.Thread(target=work, args=(config,), name="studio-redub", daemon=True)
            self._thread.start()
            return asdict(self.run)

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _work(self, config: DubConfig) -> None:
        from flows.dub import dub

        watcher = _RunWatcher(self.run, self._lock)
        prefect_logger = logging.getLogger("prefect")
        prefect_logger.addHandler(watcher)
        try:
            dub(config)
        except DubError as exc:
            self._finish("failed", str(exc))
        except Exception as exc:  # noqa: BLE001 - reported in the page; never the text of a line
            self._finish("failed", f"the re-dub failed ({type(exc).__name__}); see the flow run's logs")
        else:
            self.job.mark_redubbed()
            self._finish("completed", "re-dubbed")
        finally:
            prefect_logger.removeHandler(watcher)

    def _work_deployment(self, config: DubConfig) -> None:
        from prefect.client.schemas.objects import FlowRun
        from prefect.deployments import run_deployment

        from flows.pipeline import config_record

        assert self.deployment is not None
        try:
            flow_run = run_deployment(
                self.deployment,
                parameters={"config": config_record(config)},
                timeout=0,  # returns once the run is created; its state is polled below
                as_subflow=False,
                tags=["studio"],
            )
        except Exception as exc:  # noqa: BLE001 - an unknown deployment or an unreachable API: one line
            self._finish("failed", f"could not start a run of deployment {self.deployment} ({exc})")
            return
        assert isinstance(flow_run, FlowRun)  # called from a thread without an event loop: synchronous
        with self._lock:
            self.run.flow_run_id, self.run.flow_run_name = str(flow_run.id), flow_run.name
            self.run.message = f"deployment {self.deployment}: flow run {flow_run.name}"
        try:
            final = self._watch(flow_run.id)
        except Exception as exc:  # noqa: BLE001 - the API went away while the run was watched
            self._finish("failed", f"lost track of flow run {flow_run.name} ({type(exc).__name__}: {exc})")
            return
        if final.is_completed():
            self.job.mark_redubbed()
            self._finish("completed", "re-dubbed")
        else:
            reason = final.message or "see the flow run's logs"
            self._finish("failed", f"flow run {self.run.flow_run_name} ended {final.name}: {reason}")

    def _watch(self, flow_run_id: Any) -> Any:
        """Poll the deployment run until its state is final; the stage is its running task run (or the
        run's own state while it waits for a worker), the progress its synthesis log lines."""
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterId,
            LogFilter,
            LogFilterFlowRunId,
            TaskRunFilter,
            TaskRunFilterState,
            TaskRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType
        from prefect.client.schemas.sorting import LogSort

        this_run = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        running = TaskRunFilter(
            state=TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.RUNNING]))
        )
        logs = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        seen = 0
        with get_client(sync_client=True) as client:
            while True:
                flow_run = client.read_flow_run(flow_run_id)
                state = flow_run.state
                tasks = client.read_task_runs(flow_run_filter=this_run, task_run_filter=running)
                new = client.read_logs(log_filter=logs, offset=seen, sort=LogSort.TIMESTAMP_ASC)
                seen += len(new)
                with self._lock:
                    self.run.flow_run_name = flow_run.name  # dub-<video> once the run has started
                    for record in new:
                        read_progress(self.run, record.message)
                    if tasks:
                        self.run.stage = tasks[-1].name
                    elif state is not None and not state.is_running():
                        self.run.stage = state.name  # Scheduled, Pending: waiting for a worker
                if state is not None and state.is_final():
                    return state
                time.sleep(POLL_S)

    def _finish(self, state: str, message: str) -> None:
        with self._lock:
            self.run.state, self.run.message, self.run.finished = state, message, time.time()
