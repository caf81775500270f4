"""Use a Prefect server that is already running on this machine instead of starting a temporary one.

Without PREFECT_API_URL every CLI process starts Prefect's temporary server (SQLite migrations, a uvicorn
subprocess): about 10 s, the bulk of a re-run after editing one line (issue 14: a finished 60 s job's
re-run took half the first run's time, nearly all of it that start). The choice made here: when a
server answers on the local address Prefect's own `prefect server start` (and `python -m flows.serve`'s
instructions) use, the job runs against it, so a re-run costs the work it has to do plus a second or two.
We do not start a persistent server ourselves: a background process the user did not ask for would
outlive the command, hold a port and a database, and fail in ways a one-shot command should not.
Start one once with `prefect server start` (README: Fast re-runs).

Nothing changes when PREFECT_API_URL is set (the user chose a server), when no server answers, or with
QWENDUB_REUSE_PREFECT_SERVER=off (the test suite sets it: a developer's server must not receive its runs).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

PROBE_TIMEOUT_S = 0.3  # a local server answers /health in milliseconds; nothing there fails at once
REUSE_ENV = "QWENDUB_REUSE_PREFECT_SERVER"  # "off": always Prefect's temporary server (isolated tests)


def local_server_url() -> str:
    """Where `prefect server start` listens by default (PREFECT_SERVER_API_HOST / _PORT), as an API URL."""
    from prefect.settings import PREFECT_SERVER_API_HOST, PREFECT_SERVER_API_PORT

    host = PREFECT_SERVER_API_HOST.value() or "127.0.0.1"
    if host in ("0.0.0.0", "::"):  # listening everywhere: reach it on loopback
        host = "127.0.0.1"
    return f"http://{host}:{PREFECT_SERVER_API_PORT.value()}/api"


def server_answers(api_url: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """True when a Prefect server's health endpoint answers `true` at `api_url`."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout_s) as response:  # noqa: S310
            return response.status == 200 and json.loads(response.read() or b"null") is True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def use_running_server() -> str | None:
    """Point this process's Prefect client at a server already running locally; its API URL, or None
    (PREFECT_API_URL already set, or no server running: Prefect's temporary server is used as before)."""
    from prefect.context import refresh_global_settings_context
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value() or os.environ.get(REUSE_ENV, "auto").lower() in ("off", "0", "no", "false"):
        return None
    url = local_server_url()
    if not server_answers(url):
        return None
    # Prefect read its settings at import into a process-global context, which every thread falls back
    # on (task threads included: a context manager here would reach only this thread, and a task run's
    # progress artifact would start a temporary server after all); subprocesses read the environment
    os.environ["PREFECT_API_URL"] = url
    refresh_global_settings_context()
    return url
