"""Run one function per line on a bounded thread pool; the first failure cancels what has not started.

Remote calls are I/O-bound (the limiter inside the adapter does the pacing), so threads are right.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Set on Ctrl-C (flows/cli.py): lines not yet started are skipped, so the process stops within one
# request instead of finishing the whole stage in its worker threads.
CANCELLED = threading.Event()


class Cancelled(Exception):
    """The job was interrupted; nothing after this point is started."""


def check_cancelled() -> None:
    if CANCELLED.is_set():
        raise Cancelled("interrupted")


def map_lines(
    items: Sequence[T], fn: Callable[[T], R], workers: int, on_done: Callable[[], None] | None = None
) -> list[R]:
    if not items:
        return []
    results: list[R | None] = [None] * len(items)
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items))), thread_name_prefix="line") as pool:

        def guarded(item: T) -> R:
            check_cancelled()
            return fn(item)

        futures: dict[Future[R], int] = {pool.submit(guarded, item): i for i, item in enumerate(items)}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for fut in done:
                exc = fut.exception()
                if exc is not None:
                    for other in pending:
                        other.cancel()
                    raise exc
                results[futures[fut]] = fut.result()
                if on_done:
                    on_done()
    return results  # type: ignore[return-value]
