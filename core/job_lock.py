"""One process at a time works on a job folder: the `dub` flow holds the job's lock for the whole run,
and the review studio holds it for each edit it writes (and refuses edits while a run holds it).

The lock is an advisory `flock` on `<job>/.lock`: the kernel drops it when its holder exits, however it
exits (even SIGKILL), so a crashed run never leaves a job locked. The file itself stays and records the
last holder (pid, what, since when) only to word the message. flock locks belong to an open file, so a
second holder in the same process is refused too. Network filesystems may not honour flock: run one job
folder from one machine at a time there.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.errors import DubError

LOCK_FILE = ".lock"
ACQUIRE_TRIES = 5
ACQUIRE_WAIT_S = 0.05


class JobLockedError(DubError):
    """Another run (or the studio's own re-dub) is working on this job folder."""

    exit_code = 3


def _describe(holder: dict[str, Any] | None, root: Path) -> str:
    who = ""
    if holder:
        what = str(holder.get("what") or "a run")
        since = holder.get("since")
        when = f", since {time.strftime('%H:%M:%S', time.localtime(since))}" if since else ""
        who = f" ({what}, pid {holder.get('pid', '?')}{when})"
    return f"job {root.name} is being worked on by another run{who}; try again when it has finished"


def _read_holder(fd: int) -> dict[str, Any] | None:
    try:
        raw = os.pread(fd, 4096, 0)
        data = json.loads(raw.decode() or "null")
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _acquire(fd: int, root: Path) -> None:
    # a few tries: lock_holder() takes the lock shared for an instant to look, which must not make a
    # run that starts at that moment fail
    for attempt in range(ACQUIRE_TRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if attempt + 1 == ACQUIRE_TRIES:
                raise JobLockedError(_describe(_read_holder(fd), root)) from None
            time.sleep(ACQUIRE_WAIT_S)


@contextmanager
def job_lock(root: Path, what: str) -> Iterator[None]:
    """Hold `root`'s lock while the block runs; JobLockedError (one line) when someone else holds it.
    `what` names the holder in that message (e.g. "dub", "studio edit")."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, root)
        record = json.dumps({"pid": os.getpid(), "what": what, "since": time.time()}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def lock_holder(root: Path) -> dict[str, Any] | None:
    """Who holds `root`'s lock right now ({"pid", "what", "since", "message"}), or None when nobody does."""
    path = root / LOCK_FILE
    if not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd) or {}
            return {**holder, "message": _describe(holder, root)}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
