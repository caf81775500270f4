"""Pacing across processes with a Prefect global concurrency limit (models/pacing.py), against the
session's temporary Prefect server and, end to end, the real dashscope SDK and the loopback DashScope.

Timing assertions are lower bounds only (the server must make callers wait); nothing bounds wall time
from above, so a loaded machine cannot fail them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from core.errors import ConfigError
from core.languages import get_language
from core.retry import RetryPolicy
from models.pacing import GLOBAL_LIMIT_ENV, RateLimiter, global_limit_name, shared_limiter
from tests.loopback_dashscope import LoopbackDashScope

ROOT = Path(__file__).resolve().parent.parent
FAST = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.05)
UNBOUNDED_RPM = 1_000_000  # a local window that never waits: any pacing seen is the server's


def create_limit(limit: int, decay: float) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    name = f"dashscope-test-{uuid.uuid4().hex[:8]}"
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=name, limit=limit, slot_decay_per_second=decay)
        )
    return name


def active_slots(name: str) -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(name).active_slots


def assert_within_bucket(stamps: list[float], limit: int, decay: float) -> None:
    """No interval holds more starts than a token bucket of `limit` slots refilled at `decay`/s allows
    (one slot of slack: stamps are taken when the grant arrives, not when the server made it)."""
    s = sorted(stamps)
    for i in range(len(s)):
        for j in range(i + 1, len(s)):
            allowed = limit + decay * (s[j] - s[i]) + 1
            assert j - i + 1 <= allowed, f"{j - i + 1} starts in {s[j] - s[i]:.2f} s"


def timed_calls(limiter: RateLimiter, n: int) -> list[float]:
    stamps = []
    for _ in range(n):
        with limiter.slot():
            stamps.append(time.monotonic())
    return stamps


@pytest.fixture
def no_global_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for env in GLOBAL_LIMIT_ENV.values():
        monkeypatch.delenv(env, raising=False)


def test_global_limit_name_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QWENDUB_TTS_RATE_LIMIT", "  dashscope-tts \n")
    monkeypatch.setenv("QWENDUB_MT_RATE_LIMIT", "   ")
    assert global_limit_name("tts") == "dashscope-tts"
    assert global_limit_name("mt") is None
    monkeypatch.delenv("QWENDUB_MT_RATE_LIMIT")
    assert global_limit_name("mt") is None
    with pytest.raises(ValueError, match="unknown request kind"):
        global_limit_name("asr")


def test_limiter_cache_is_keyed_by_global_limit() -> None:
    endpoint = f"http://cache-key-{uuid.uuid4().hex}"
    plain = shared_limiter(endpoint, "m", 60, 4)
    assert shared_limiter(endpoint, "m", 60, 4) is plain
    paced = shared_limiter(endpoint, "m", 60, 4, "dashscope-mt")
    assert paced is not plain and paced.global_limit == "dashscope-mt"
    assert shared_limiter(endpoint, "m", 60, 4, "dashscope-mt") is paced
    assert plain.global_limit is None


def test_server_paces_what_the_local_window_lets_through(prefect_harness: None) -> None:
    local_sleeps: list[float] = []
    local_only = RateLimiter(UNBOUNDED_RPM, 4, sleep=local_sleeps.append)
    timed_calls(local_only, 10)
    assert local_sleeps == []  # the local window alone never waits at this rpm

    name = create_limit(limit=2, decay=4)
    limiter = RateLimiter(UNBOUNDED_RPM, 4, sleep=local_sleeps.append, global_limit=name)
    t0 = time.monotonic()
    stamps = timed_calls(limiter, 10)
    elapsed = stamps[-1] - t0
    assert local_sleeps == []  # every wait was the server's
    # a burst of 2, then 4 per second: 8 more starts need at least 2 s
    assert elapsed >= 0.9 * (10 - 2) / 4, elapsed
    assert_within_bucket(stamps, limit=2, decay=4)
    print(f"10 calls, limit 2, decay 4/s: {elapsed:.2f} s (token bucket minimum 2.00 s)")


WORKER = r"""
import json, sys, time
from models.pacing import RateLimiter
limiter = RateLimiter(1_000_000, 4, global_limit=sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
stamps = []
for _ in range(int(sys.argv[2])):
    with limiter.slot():
        stamps.append(time.time())
print(json.dumps(stamps), flush=True)
"""


def test_two_processes_share_the_server_budget(prefect_harness: None, tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL

    name = create_limit(limit=2, decay=4)
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "PREFECT_HOME": str(tmp_path)}
    n = 8
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, name, str(n)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for p in procs:  # both imported and ready: the timed part starts together
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        t0 = time.time()
        outputs = [p.communicate("go\n", timeout=120)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0]
    per_process = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    stamps = sorted(s for run in per_process for s in run)
    assert len(stamps) == 2 * n
    elapsed = stamps[-1] - t0
    # alone, each process would be done in (8 - 2) / 4 = 1.5 s; together they share one bucket
    assert elapsed >= 0.9 * (2 * n - 2) / 4, elapsed
    assert_within_bucket(stamps, limit=2, decay=4)
    print(f"2 processes x {n} calls, limit 2, decay 4/s: {elapsed:.2f} s (token bucket minimum 3.50 s)")


def test_a_missing_limit_is_one_config_error(prefect_harness: None) -> None:
    name = f"dashscope-missing-{uuid.uuid4().hex[:8]}"
    limiter = RateLimiter(180, 8, global_limit=name)
    with pytest.raises(ConfigError) as info, limiter.slot():
        pytest.fail("the request must not start")
    assert str(info.value) == (
        f"global rate limit {name!r} does not exist on the Prefect server "
        f"(prefect gcl create {name} --limit 8 --slot-decay-per-second 3)"
    )
    with pytest.raises(ConfigError, match="does not exist"), limiter.slot():  # every use, not just the first
        pass


def test_a_limit_without_decay_is_a_config_error(prefect_harness: None) -> None:
    name = create_limit(limit=4, decay=0)
    limiter = RateLimiter(60, 4, global_limit=name)
    fix = f"prefect gcl update {name} --slot-decay-per-second 1"
    with pytest.raises(ConfigError, match=rf"has no slot decay.*{fix}"), limiter.slot():
        pass


def test_without_the_variables_nothing_talks_to_prefect(
    dashscope_server: LoopbackDashScope, no_global_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import prefect.client.orchestration
    import prefect.concurrency.sync

    from models.dashscope_tts import DashScopeTTS
    from models.qwen_mt import QwenMTTranslator

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("Prefect was called without a global rate limit configured")

    monkeypatch.setattr(prefect.concurrency.sync, "rate_limit", refuse)
    monkeypatch.setattr(prefect.client.orchestration, "get_client", refuse)
    mt = QwenMTTranslator(retry=FAST)
    assert mt.limiter.global_limit is None
    assert mt.translate("Hello.", get_language("en"), get_language("ja"))
    tts = DashScopeTTS(retry=FAST)
    assert tts.limiter.global_limit is None
    assert tts.synthesize("Hello there.", get_language("en")).audio.size > 0
    assert dashscope_server.count("mt") == 1 and dashscope_server.count("tts") == 1


def test_adapters_take_one_server_slot_per_request(
    prefect_harness: None, dashscope_server: LoopbackDashScope, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models.dashscope_tts import DashScopeTTS
    from models.dashscope_voice_clone import DashScopeCloneTTS
    from models.qwen_mt import QwenMTTranslator
    from models.shortener import DashScopeShortener

    # a decay of 0.01/s frees no slot for 100 s, so the server's count of active slots is exact
    mt_limit, tts_limit = create_limit(limit=100, decay=0.01), create_limit(limit=100, decay=0.01)
    monkeypatch.setenv("QWENDUB_MT_RATE_LIMIT", mt_limit)
    monkeypatch.setenv("QWENDUB_TTS_RATE_LIMIT", tts_limit)
    en, ja = get_language("en"), get_language("ja")

    mt = QwenMTTranslator(retry=FAST)
    assert mt.limiter.global_limit == mt_limit
    for text in ("The old lighthouse.", "Three narrow streets.", "A quiet harbour."):
        assert mt.translate(text, en, ja)
    shortener = DashScopeShortener(retry=FAST)
    assert shortener.limiter.global_limit == mt_limit
    assert shortener.shorten("The old lighthouse turns on.", "古い灯台が点灯します。", en, ja, 6)
    tts = DashScopeTTS(retry=FAST)
    assert tts.limiter.global_limit == tts_limit
    tts.synthesize("The whole town has only three narrow streets.", en)
    clone = DashScopeCloneTTS(voice="qwen-tts-vc-test", speaker_id="s1", reference_sha256="0" * 64)
    assert clone.limiter.global_limit == tts_limit

    text_requests = dashscope_server.count("mt") + dashscope_server.count("chat")
    assert text_requests == 4
    assert active_slots(mt_limit) == text_requests
    assert active_slots(tts_limit) == dashscope_server.count("tts") >= 1


def test_adapter_reports_a_missing_limit_without_calling_dashscope(
    prefect_harness: None, dashscope_server: LoopbackDashScope, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models.qwen_mt import QwenMTTranslator

    name = f"dashscope-mt-missing-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("QWENDUB_MT_RATE_LIMIT", name)
    create = f"prefect gcl create {name} --limit 4 --slot-decay-per-second 1"
    with pytest.raises(ConfigError, match=rf"\({create}\)$"):
        QwenMTTranslator(retry=FAST).translate("Hello.", None, get_language("ja"))
    assert dashscope_server.count() == 0
