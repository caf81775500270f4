"""Console logging for CLI runs: Prefect's own logs stay, tracebacks do not (they reach the Prefect API
and UI, and `--debug` shows them); user errors are printed once by the CLI."""

from __future__ import annotations

import logging
import os


class DropTracebacks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return True


def configure_prefect_environment(debug: bool = False) -> None:
    # Offline machines: no telemetry calls (they also cause "database is locked" noise).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    import prefect  # noqa: F401 - importing sets up Prefect's logging handlers

    if debug:
        return
    from prefect.logging.configuration import setup_logging

    setup_logging()
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs", "prefect.engine"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, DropTracebacks) for f in handler.filters):
                handler.addFilter(DropTracebacks())
