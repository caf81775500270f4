"""Run one function per line on a bounded thread pool; the first failure cancels what has not started.

Remote calls are I/O-bound (the limiter inside the adapter does the pacing), so threads are right.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def map_lines(
    items: Sequence[T], fn: Callable[[T], R], workers: int, on_done: Callable[[], None] | None = None
) -> list[R]:
    if not items:
        return []
    results: list[R | None] = [None] * len(items)
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items))), thread_name_prefix="line") as pool:
        futures: dict[Future[R], int] = {pool.submit(fn, item): i for i, item in enumerate(items)}
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
