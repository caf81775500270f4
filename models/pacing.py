"""Request pacing shared by every caller of one account in this process, and optionally across processes.

A sliding-window limiter (at most `rpm` request starts in any 60 s window) plus a concurrency cap.
DashScope enforces per-model RPM on a rolling minute, so a token bucket with a full initial burst would
let a restart exceed it; the window never does.

The window only sees this process. When several flow runs, processes or Dask workers share one account,
`QWENDUB_TTS_RATE_LIMIT` / `QWENDUB_MT_RATE_LIMIT` can name a Prefect global concurrency limit with slot
decay (`prefect gcl create dashscope-tts --limit 8 --slot-decay-per-second 3`): every request then also
takes one slot of it with `prefect.concurrency.sync.rate_limit`, a token bucket kept by the Prefect
server for everyone who asks it (docs/operations.md, section 5). Without the variables nothing here
imports or calls Prefect.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from core.errors import ConfigError, UpstreamError

WINDOW_S = 60.0
# Requests that leave at the edge of the window can arrive just inside the server's: a small margin
# (2 % of the window) removes those 429s at no measurable cost in throughput (bench/synth_throughput.py).
MARGIN_S = 1.0

# Which Prefect global concurrency limit paces each kind of request, by environment variable. The text
# client (Qwen-MT and the shortening chat model) uses "mt"; speech synthesis, system and cloned voices, "tts".
GLOBAL_LIMIT_ENV = {"tts": "QWENDUB_TTS_RATE_LIMIT", "mt": "QWENDUB_MT_RATE_LIMIT"}


def global_limit_name(kind: str) -> str | None:
    """The Prefect global concurrency limit named for this kind of request ("tts" or "mt"), or None."""
    try:
        env = GLOBAL_LIMIT_ENV[kind]
    except KeyError:
        raise ValueError(f"unknown request kind {kind!r}; expected {' or '.join(GLOBAL_LIMIT_ENV)}") from None
    return os.environ.get(env, "").strip() or None


class RateLimiter:
    def __init__(
        self,
        rpm: int,
        concurrency: int,
        clock=time.monotonic,
        sleep=time.sleep,
        global_limit: str | None = None,
    ):
        if rpm < 1 or concurrency < 1:
            raise ValueError("rpm and concurrency must be >= 1")
        self.rpm = rpm
        self.concurrency = concurrency
        self.global_limit = global_limit or None
        self._starts: deque[float] = deque()
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(concurrency)
        self._clock = clock
        self._sleep = sleep

    def _reserve_start(self) -> float:
        while True:
            with self._lock:
                now = self._clock()
                while self._starts and now - self._starts[0] >= WINDOW_S + MARGIN_S:
                    self._starts.popleft()
                if len(self._starts) < self.rpm:
                    self._starts.append(now)
                    return now
                wait = WINDOW_S + MARGIN_S - (now - self._starts[0])
            self._sleep(max(wait, 0.001))

    def _restamp(self, stamp: float) -> None:
        """Move a reserved start to now, when the request really starts (after the server's wait). Every
        other start in the window was stamped earlier under the lock, so appending keeps it ordered."""
        with self._lock:
            # ValueError: it already left the window (a global wait over a minute); count the real start
            with contextlib.suppress(ValueError):
                self._starts.remove(stamp)
            self._starts.append(self._clock())

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one concurrent slot and one request start of the window for the duration of a call.

        With a global limit, one slot of it is taken last, after the local window admitted the start.
        A rate-limit slot is not held but decays on the server, so taking it is spending one request of
        the account's budget: taken before the local waits, a process would spend budget on requests it
        cannot start yet while other processes that could are refused. Taken last, the request starts
        as soon as the server grants it."""
        with self._slots:
            stamp = self._reserve_start()
            if self.global_limit is not None:
                self._take_global_slot(self.global_limit)
                self._restamp(stamp)
            yield

    def _take_global_slot(self, name: str) -> None:
        from prefect.concurrency.sync import rate_limit  # lazy: only with a global limit configured

        try:
            # strict: a missing limit is an error, not a silent "no limit" (Prefect's default)
            rate_limit(name, occupy=1, strict=True)
        except Exception as exc:  # Prefect wraps every failure in ConcurrencySlotAcquisitionError
            raise self._global_limit_error(name, exc) from exc

    def _global_limit_error(self, name: str, exc: Exception) -> Exception:
        """Name what is wrong: ask the server about the limit instead of parsing Prefect's messages."""
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        create = (
            f"prefect gcl create {name} --limit {self.concurrency} --slot-decay-per-second {self.rpm / 60:g}"
        )
        try:
            with get_client(sync_client=True) as client:
                limit = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            return ConfigError(f"global rate limit {name!r} does not exist on the Prefect server ({create})")
        except Exception as read_exc:
            return UpstreamError(
                f"global rate limit {name!r}: no answer from the Prefect server ({type(read_exc).__name__})",
                code="PrefectUnavailable",
                transient=True,
            )
        if not limit.slot_decay_per_second:
            return ConfigError(
                f"global rate limit {name!r} has no slot decay, which a rate limit needs "
                f"(prefect gcl update {name} --slot-decay-per-second {self.rpm / 60:g})"
            )
        if limit.limit < 1:
            return ConfigError(
                f"global rate limit {name!r} has no slot to give "
                f"(prefect gcl update {name} --limit {self.concurrency})"
            )
        detail = str(exc) or type(exc).__name__
        return UpstreamError(
            f"global rate limit {name!r}: the Prefect server refused a slot ({detail})",
            code="PrefectConcurrency",
            transient=True,
        )


_LIMITERS: dict[tuple[str, str, str | None], RateLimiter] = {}
_REGISTRY_LOCK = threading.Lock()


def shared_limiter(
    endpoint: str, model: str, rpm: int, concurrency: int, global_limit: str | None = None
) -> RateLimiter:
    """One limiter per (endpoint, model, global limit) per process, so parallel languages share the
    account's RPM; `global_limit` (see global_limit_name) also paces it with the Prefect server."""
    key = (endpoint, model, global_limit or None)
    with _REGISTRY_LOCK:
        limiter = _LIMITERS.get(key)
        if limiter is None or (limiter.rpm, limiter.concurrency) != (rpm, concurrency):
            limiter = RateLimiter(rpm, concurrency, global_limit=global_limit)
            _LIMITERS[key] = limiter
        return limiter


def account_limit_name(kind: str, api_key: str, endpoint: str) -> str:
    """The global rate limit every process of one DashScope account (key and endpoint) shares for one
    kind of request: `dashscope-tts-<12 hex>`, a digest, so the key itself never reaches the server."""
    import hashlib

    digest = hashlib.sha256(f"{endpoint}\n{api_key}".encode()).hexdigest()[:12]
    return f"dashscope-{kind}-{digest}"


def share_account_limits(api_key: str, endpoint: str, pacing: dict[str, tuple[int, int]]) -> dict[str, str]:
    """Turn the global rate limit on for every process that shares this account: for each kind ("tts",
    "mt") whose variable the user has not set, a limit named after the account is created on the Prefect
    server when missing (at most `concurrency` requests at once, refilled at `rpm / 60` per second: the
    account's RPM whatever the number of processes) and its name exported in QWENDUB_*_RATE_LIMIT, which
    every worker process started afterwards inherits. `pacing`: kind -> (rpm, concurrency). Returns the
    names in use by kind. Needs the Prefect API (the temporary server or PREFECT_API_URL)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    names: dict[str, str] = {}
    with get_client(sync_client=True) as client:
        for kind, (rpm, concurrency) in pacing.items():
            env = GLOBAL_LIMIT_ENV[kind]
            given = os.environ.get(env, "").strip()
            if given:  # the user's own limit: theirs to size
                names[kind] = given
                continue
            name = account_limit_name(kind, api_key, endpoint)
            decay = rpm / WINDOW_S
            try:
                limit = client.read_global_concurrency_limit_by_name(name)
                if (limit.limit, limit.slot_decay_per_second) != (concurrency, decay):  # this job's --rpm
                    client.update_global_concurrency_limit(
                        name, GlobalConcurrencyLimitUpdate(limit=concurrency, slot_decay_per_second=decay)
                    )
            except ObjectNotFound:
                with contextlib.suppress(ObjectAlreadyExists):  # another process created it first
                    client.create_global_concurrency_limit(
                        GlobalConcurrencyLimitCreate(
                            name=name, limit=concurrency, slot_decay_per_second=decay
                        )
                    )
            os.environ[env] = name
            names[kind] = name
    return names
