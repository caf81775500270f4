"""The DashScope TTS adapter through the real dashscope SDK against the loopback server."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigError, InputError, UpstreamError
from core.languages import get_language
from core.retry import RetryPolicy
from models.billing import billed_characters
from models.dashscope_tts import MAX_REQUEST_CHARS, SAMPLE_RATE, DashScopeTTS
from tests.loopback_dashscope import LoopbackDashScope

FAST_RETRY = RetryPolicy(max_attempts=6, base_delay_s=0.01, max_delay_s=0.05)
JA, EN = get_language("ja"), get_language("en")


def make_tts(**kw) -> DashScopeTTS:
    return DashScopeTTS(retry=FAST_RETRY, **kw)


@pytest.mark.parametrize("stream", [False, True])
def test_synthesizes_a_line(dashscope_server: LoopbackDashScope, stream: bool) -> None:
    tts = make_tts(voice="Cherry", stream=stream)
    text = "The whole town has only three narrow streets."
    clip = tts.synthesize(text, EN)
    assert clip.sample_rate == SAMPLE_RATE
    expected = dashscope_server.seconds_per_char * len(text)
    assert abs(clip.audio.size / SAMPLE_RATE - expected) < 0.05
    assert np.max(np.abs(clip.audio)) > 0.1
    assert clip.billed_characters == len(text)
    (request,) = dashscope_server.requests_of("tts")
    assert request.body["model"] == "qwen3-tts-flash-2025-11-27"
    assert request.body["input"] == {"text": text, "voice": "Cherry", "language_type": "English"}
    assert request.stream is stream
    assert dashscope_server.count("download") == (0 if stream else 1)


def test_stream_and_url_give_the_same_audio(dashscope_server: LoopbackDashScope) -> None:
    text = "こんにちは、世界。"
    a = make_tts(stream=False).synthesize(text, JA).audio
    b = make_tts(stream=True).synthesize(text, JA).audio
    assert a.shape == b.shape and np.allclose(a, b, atol=1e-4)


def test_billing_matches_the_service(dashscope_server: LoopbackDashScope) -> None:
    text = "東京は大きい都市です。Tokyo!"
    clip = make_tts().synthesize(text, JA)
    assert clip.billed_characters == dashscope_server.billed_characters_total == billed_characters(text)


def test_transient_faults_are_retried_and_billed_once(dashscope_server: LoopbackDashScope) -> None:
    dashscope_server.fail_next("tts", 429, "Throttling.RateQuota", times=2)
    dashscope_server.fail_next("tts", 500, "InternalError", times=1)
    clip = make_tts().synthesize("Hello there.", EN)
    assert clip.attempts == 4
    assert dashscope_server.count("tts") == 4
    assert dashscope_server.billed_characters_total == len("Hello there.")


def test_retry_after_is_honoured(dashscope_server: LoopbackDashScope) -> None:
    dashscope_server.fail_next("tts", 429, "Throttling", times=1, retry_after=0.3)
    make_tts().synthesize("Hello.", EN)
    first, second = dashscope_server.requests_of("tts")
    assert second.started_at - first.finished_at >= 0.25


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "InvalidParameter"), (401, "InvalidApiKey"), (403, "AccessDenied"), (404, "ModelNotFound"),
     (429, "Throttling.AllocationQuota"), (400, "Arrearage")],
)  # fmt: skip
def test_permanent_errors_are_not_retried(
    dashscope_server: LoopbackDashScope, status: int, code: str
) -> None:
    dashscope_server.fail_next("tts", status, code, times=1)
    with pytest.raises(UpstreamError) as err:
        make_tts().synthesize("A secret script line.", EN)
    assert dashscope_server.count("tts") == 1
    assert f"HTTP {status} {code}" in str(err.value)
    assert "secret script" not in str(err.value)


def test_voice_the_service_rejects_is_a_clear_error(dashscope_server: LoopbackDashScope) -> None:
    tts = make_tts()
    tts.voice = "Nobody"  # bypass our own catalogue check to see the service's 400
    with pytest.raises(UpstreamError, match="HTTP 400 InvalidParameter"):
        tts.synthesize("Hello.", EN)
    assert dashscope_server.count("tts") == 1


def test_unknown_voice_is_refused_before_any_call(dashscope_server: LoopbackDashScope) -> None:
    with pytest.raises(ConfigError, match="did you mean Cherry"):
        make_tts(voice="Chery")
    assert dashscope_server.count() == 0


def test_instructions_need_the_instruct_model(dashscope_server: LoopbackDashScope) -> None:
    with pytest.raises(ConfigError, match="instruct"):
        make_tts(instructions="Speak slowly.")
    tts = make_tts(model="qwen3-tts-instruct-flash-2026-01-26", instructions="Speak slowly.")
    tts.synthesize("Hello.", EN)
    (request,) = dashscope_server.requests_of("tts")
    assert request.body["parameters"]["instructions"] == "Speak slowly."


def test_expired_url_is_re_requested_then_reported(dashscope_server: LoopbackDashScope) -> None:
    dashscope_server.expire_urls = True
    tts = DashScopeTTS(retry=RetryPolicy(max_attempts=2, base_delay_s=0.01))
    with pytest.raises(UpstreamError, match="expired"):
        tts.synthesize("Hello.", EN)
    assert dashscope_server.count("tts") == 2  # one re-request, bounded by the retry budget


def test_mid_stream_error_is_retried(dashscope_server: LoopbackDashScope) -> None:
    dashscope_server.fail_mid_stream(times=1)
    clip = make_tts(stream=True).synthesize("Hello from the stream.", EN)
    assert clip.attempts == 2
    assert abs(clip.audio.size / SAMPLE_RATE - dashscope_server.seconds_per_char * 22) < 0.05


def test_long_line_is_split_at_sentences_never_truncated(dashscope_server: LoopbackDashScope) -> None:
    sentence = "This sentence is part of a very long narration that goes on. "
    text = (sentence * 12).strip()
    assert len(text) > MAX_REQUEST_CHARS
    clip = make_tts().synthesize(text, EN)
    sent = [r.body["input"]["text"] for r in dashscope_server.requests_of("tts")]
    assert clip.requests == len(sent) >= 2
    assert all(len(s) <= MAX_REQUEST_CHARS for s in sent)
    assert all(s.endswith(".") for s in sent)  # cut at sentence ends
    assert " ".join(sent) == text
    assert (
        abs(clip.audio.size / SAMPLE_RATE - dashscope_server.seconds_per_char * (len(text) - len(sent) + 1))
        < 0.1
    )


def test_connection_refused_is_retried_then_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-x")
    monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", "http://127.0.0.1:9/api/v1")
    with pytest.raises(UpstreamError, match="connection failed after 2 attempts"):
        DashScopeTTS(retry=RetryPolicy(max_attempts=2, base_delay_s=0.01)).synthesize("Hello.", EN)


def test_missing_key_is_an_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    with pytest.raises(InputError, match="DASHSCOPE_API_KEY"):
        DashScopeTTS()


def test_region_hosts_and_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    from models.dashscope_common import Endpoint

    for var in ("DASHSCOPE_HTTP_BASE_URL", "DASHSCOPE_COMPATIBLE_BASE_URL", "DASHSCOPE_WEBSOCKET_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    assert Endpoint.for_region("intl").http_base_url == "https://dashscope-intl.aliyuncs.com/api/v1"
    assert Endpoint.for_region("cn").http_base_url == "https://dashscope.aliyuncs.com/api/v1"
    assert (
        Endpoint.for_region("cn").compatible_base_url == "https://dashscope.aliyuncs.com/compatible-mode/v1"
    )
    monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", "http://proxy.local/api/v1")
    monkeypatch.setenv("DASHSCOPE_COMPATIBLE_BASE_URL", "http://proxy.local/compatible-mode/v1")
    e = Endpoint.for_region("intl")
    assert (e.http_base_url, e.compatible_base_url) == (
        "http://proxy.local/api/v1",
        "http://proxy.local/compatible-mode/v1",
    )
