"""Preloaded by every worker process of the local Dask cluster (flows/runners.py): when the CLI keeps its
terminal's stderr for the one `error:` line (flows/cli.py, console_logs_to_stdout), the workers' own
console logs follow the same rule (progress on stdout, no Prefect failure chatter), since they write to
the same terminal."""

from __future__ import annotations

import os
from typing import Any

QUIET_ENV = "QWENDUB_CONSOLE_STDOUT"  # set by the CLI, inherited by the worker processes


def dask_setup(worker: Any) -> None:
    if os.environ.get(QUIET_ENV) != "1":
        return
    import prefect  # noqa: F401 - importing sets up Prefect's console handlers, redirected next

    from flows.cli import console_logs_to_stdout

    console_logs_to_stdout()
