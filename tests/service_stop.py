"""Stopping a `python -m flows.serve` process as a user does: Ctrl-C to its process group."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

# Alone it stops in ~0.5 s; a full suite on a loaded 2-core machine once took over 60 s (the runner
# settles its runs with a session server that has served every earlier test). Past this, it is a hang.
STOP_TIMEOUT_S = 240


def stop_service(proc: subprocess.Popen, log: Path) -> int:
    """SIGINT to the service's group, then its exit code; a service still running after STOP_TIMEOUT_S is
    killed and the test fails with the tail of its log (not a bare TimeoutExpired)."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        return proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        tail = log.read_text()[-3000:]
        raise AssertionError(f"the service ignored Ctrl-C for {STOP_TIMEOUT_S} s:\n{tail}") from None
