"""Progress for long stages: a log line every ~10 % and a Prefect progress artifact the UI shows."""

from __future__ import annotations

import logging
import threading
import time
from uuid import UUID


def stage_logger() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a run (its records reach the UI), a plain logger outside."""
    try:
        from prefect.logging import get_run_logger

        return get_run_logger()
    except Exception:  # noqa: BLE001 - MissingContextError outside a run
        return logging.getLogger("qwen_dub")


class StageProgress:
    def __init__(self, stage: str, total: float, unit: str = "items", min_interval_s: float = 2.0) -> None:
        self.stage, self.total, self.unit = stage, max(float(total), 1e-9), unit
        self._done = 0.0
        self._last_pct = -100.0
        self._last_time = 0.0
        self._min_interval_s = min_interval_s
        self._lock = threading.Lock()
        self._log = stage_logger()
        self._artifact: UUID | None = None
        try:
            from prefect.artifacts import create_progress_artifact
            from prefect.context import get_run_context

            get_run_context()  # outside a run there is nowhere to show it (and no server to start)

            artifact_id = create_progress_artifact(0.0, description=f"{stage}: progress")
            self._artifact = artifact_id if isinstance(artifact_id, UUID) else None
        except Exception:  # noqa: BLE001 - no run context (plain function use) or no API
            self._artifact = None

    def advance(self, amount: float = 1.0) -> None:
        with self._lock:
            self.set_locked(self._done + amount)

    def set(self, done: float, total: float | None = None) -> None:
        with self._lock:
            if total:
                self.total = max(float(total), 1e-9)
            self.set_locked(done)

    def set_locked(self, done: float) -> None:
        self._done = min(done, self.total)
        pct = 100.0 * self._done / self.total
        now = time.monotonic()
        finished = self._done >= self.total
        if finished or (pct - self._last_pct >= 10.0 and now - self._last_time >= self._min_interval_s):
            self._last_pct, self._last_time = pct, now
            shown = f"{self._done:.0f}/{self.total:.0f} {self.unit}"
            self._log.info("progress stage=%s done=%s pct=%.0f", self.stage, shown.replace(" ", "_"), pct)
            if self._artifact is not None:
                try:
                    from prefect.artifacts import update_progress_artifact

                    update_progress_artifact(self._artifact, pct)
                except Exception:  # noqa: BLE001 - progress is best-effort, never fails a stage
                    self._artifact = None


class NullProgress(StageProgress):
    """Progress nobody watches (work done inline for one line): no log lines, no artifact."""

    def __init__(self) -> None:  # noqa: D107 - deliberately skips StageProgress.__init__
        self.total, self._done = 1.0, 0.0
        self._lock = threading.Lock()

    def set_locked(self, done: float) -> None:
        self._done = done
