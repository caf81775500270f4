"""Request pacing shared by every caller of one account in this process.

A sliding-window limiter (at most `rpm` request starts in any 60 s window) plus a concurrency cap.
DashScope enforces per-model RPM on a rolling minute, so a token bucket with a full initial burst would
let a restart exceed it; the window never does.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

WINDOW_S = 60.0
# Requests that leave at the edge of the window can arrive just inside the server's: a small margin
# (2 % of the window) removes those 429s at no measurable cost in throughput (bench/synth_throughput.py).
MARGIN_S = 1.0


class RateLimiter:
    def __init__(self, rpm: int, concurrency: int, clock=time.monotonic, sleep=time.sleep):
        if rpm < 1 or concurrency < 1:
            raise ValueError("rpm and concurrency must be >= 1")
        self.rpm = rpm
        self.concurrency = concurrency
        self._starts: deque[float] = deque()
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(concurrency)
        self._clock = clock
        self._sleep = sleep

    def _reserve_start(self) -> None:
        while True:
            with self._lock:
                now = self._clock()
                while self._starts and now - self._starts[0] >= WINDOW_S + MARGIN_S:
                    self._starts.popleft()
                if len(self._starts) < self.rpm:
                    self._starts.append(now)
                    return
                wait = WINDOW_S + MARGIN_S - (now - self._starts[0])
            self._sleep(max(wait, 0.001))

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one concurrent slot and one request start of the window for the duration of a call."""
        with self._slots:
            self._reserve_start()
            yield


_LIMITERS: dict[tuple[str, str], RateLimiter] = {}
_REGISTRY_LOCK = threading.Lock()


def shared_limiter(endpoint: str, model: str, rpm: int, concurrency: int) -> RateLimiter:
    """One limiter per (endpoint, model) per process, so parallel languages share the account's RPM."""
    key = (endpoint, model)
    with _REGISTRY_LOCK:
        limiter = _LIMITERS.get(key)
        if limiter is None or (limiter.rpm, limiter.concurrency) != (rpm, concurrency):
            limiter = RateLimiter(rpm, concurrency)
            _LIMITERS[key] = limiter
        return limiter
