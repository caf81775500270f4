"""Retries for remote calls inside a task: transient failures only, exponential backoff with full jitter.

Prefect's task retries re-run a whole stage; a dubbing stage holds hundreds of calls, so each call is
retried on its own here (tenacity-style, but small enough that the Retry-After handling stays readable).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import requests

from core.errors import UpstreamError

if TYPE_CHECKING:
    from core.config import DubConfig

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    max_retry_after_s: float = 120.0  # a server asking for longer than this is treated as an outage

    @classmethod
    def of(cls, config: DubConfig) -> RetryPolicy:
        """The policy a job asks for (--retries, and the base delay tests shorten)."""
        return cls(max_attempts=config.retry_attempts, base_delay_s=config.retry_base_delay_s)

    def delay(self, attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
        """Full jitter (AWS architecture blog, "Exponential Backoff And Jitter"): uniform in
        [0, base * 2^attempt], capped; a server's Retry-After is a floor, never shortened."""
        ceiling = min(self.max_delay_s, self.base_delay_s * (2**attempt))
        wait = rng.uniform(0, ceiling)
        if retry_after_s is not None:
            wait = max(wait, min(retry_after_s, self.max_retry_after_s))
        return wait


TRANSPORT_ERRORS = (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)


@dataclass
class CallStats:
    attempts: int = 0
    transient_failures: int = 0


def call_with_retries(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    stats: CallStats | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> T:
    """Call fn until it succeeds; retry UpstreamError(transient=True) and transport errors only."""
    rng = rng or random.Random()
    stats = stats if stats is not None else CallStats()
    for attempt in range(policy.max_attempts):
        stats.attempts += 1
        try:
            return fn()
        except UpstreamError as exc:
            if not exc.transient or attempt == policy.max_attempts - 1:
                raise
            retry_after = exc.retry_after_s
        except TRANSPORT_ERRORS as exc:
            if attempt == policy.max_attempts - 1:
                raise UpstreamError(
                    f"connection failed after {stats.attempts} attempts ({type(exc).__name__})",
                    code=type(exc).__name__,
                    transient=True,
                ) from None
            retry_after = None
        stats.transient_failures += 1
        sleep(policy.delay(attempt, retry_after, rng))
    raise AssertionError("unreachable")  # the loop returns or raises
