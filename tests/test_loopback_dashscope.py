"""The loopback DashScope server, driven through the real dashscope SDK (2.0.2) as the project drives it."""

from __future__ import annotations

import base64
import io
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import dashscope
import numpy as np
import pytest
import requests
import soundfile as sf
from dashscope.api_entities.http_request import close_shared_sync_session

from tests.loopback_dashscope import MT_PATH, SAMPLE_RATE, TTS_PATH, LoopbackDashScope

KEY = "sk-test-loopback"


@pytest.fixture
def server() -> Iterator[LoopbackDashScope]:
    with LoopbackDashScope(api_key=KEY) as srv:
        yield srv


@pytest.fixture(autouse=True)
def sdk_at(server: LoopbackDashScope) -> Iterator[None]:
    """Point the SDK at the server; restore its globals (and drop its pooled connections) afterwards."""
    saved_url, saved_key = dashscope.base_http_api_url, dashscope.api_key
    dashscope.base_http_api_url = server.base_http_api_url
    dashscope.api_key = None  # type: ignore[assignment]  # every call passes api_key explicitly
    yield
    dashscope.base_http_api_url, dashscope.api_key = saved_url, saved_key
    close_shared_sync_session()


def tts(
    text: str, *, voice: str = "Cherry", model: str = "qwen3-tts-flash", key: str = KEY, **kw: Any
) -> Any:
    kw.setdefault("language_type", "English")
    return dashscope.MultiModalConversation.call(model=model, api_key=key, text=text, voice=voice, **kw)


def mt(content: str, target: str = "German", *, model: str = "qwen-mt-flash", **kw: Any) -> Any:
    messages = kw.pop("messages", [{"role": "user", "content": content}])
    options = {"source_lang": "auto", "target_lang": target, **kw.pop("options", {})}
    return dashscope.Generation.call(
        model=model,
        api_key=KEY,
        messages=messages,
        translation_options=options,
        result_format="message",
        **kw,
    )


def decode_wav(data: bytes) -> tuple[np.ndarray, int, int]:
    info = sf.info(io.BytesIO(data))
    pcm, sr = sf.read(io.BytesIO(data), dtype="int16")
    return pcm, sr, info.channels


def seconds_for(billed: int) -> float:
    return max(0.4, 0.06 * billed)


# ------------------------------------------------------------------------------------------- synthesis


def test_non_streaming_tts_returns_a_signed_url_to_24khz_mono_speech_of_the_billed_length(
    server: LoopbackDashScope,
) -> None:
    text = "Hello from the loopback server."  # 31 characters
    rsp = tts(text)

    assert rsp.status_code == 200 and rsp.code == "" and rsp.request_id
    assert rsp.output.finish_reason == "stop" and rsp.output.audio.data == ""
    assert rsp.usage.characters == 31
    audio = rsp.output.audio
    assert (
        audio.url.startswith(f"{server.base_url}/files/")
        and "Expires=" in audio.url
        and "Signature=" in audio.url
    )
    assert audio.id.startswith("audio_")
    assert abs(audio.expires_at - (time.time() + 86_400)) < 60

    download = requests.get(audio.url, timeout=5)
    assert download.status_code == 200 and download.headers["Content-Type"] == "audio/wav"
    pcm, sr, channels = decode_wav(download.content)
    assert (sr, channels) == (SAMPLE_RATE, 1)
    assert len(pcm) / sr == pytest.approx(seconds_for(31), abs=1e-3)

    edge = int(0.05 * SAMPLE_RATE)
    assert not pcm[:edge].any() and not pcm[-edge:].any()  # 50 ms of silence at both ends
    assert 0.25 < np.abs(pcm).max() / 32767 <= 0.31
    voiced = pcm[edge:-edge].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(voiced))
    peak_hz = np.fft.rfftfreq(len(voiced), 1 / sr)[spectrum.argmax()]
    assert 130 <= peak_hz <= 230  # a voice-like fundamental, not noise or a test beep


def test_synthesis_is_deterministic_and_voice_dependent() -> None:
    first = requests.get(tts("Same words.").output.audio.url, timeout=5).content
    again = requests.get(tts("Same words.").output.audio.url, timeout=5).content
    other_voice = requests.get(tts("Same words.", voice="Ethan").output.audio.url, timeout=5).content
    assert first == again
    assert first != other_voice


def test_sse_chunks_concatenate_to_the_same_pcm_as_the_downloaded_wav(server: LoopbackDashScope) -> None:
    parts = list(tts("Streaming speech, chunk by chunk, for the dubbing pipeline.", stream=True))

    assert all(p.status_code == 200 for p in parts)
    assert [p.output.finish_reason for p in parts] == ["null"] * (len(parts) - 1) + ["stop"]
    chunks = [np.frombuffer(base64.b64decode(p.output.audio.data), dtype="<i2") for p in parts[:-1]]
    assert all(0.1 <= len(c) / SAMPLE_RATE <= 0.2 for c in chunks[:-1])  # 100-200 ms each, last may be short
    last = parts[-1]
    assert last.output.audio.data == "" and last.output.audio.url and last.usage.characters == 59

    pcm, _, _ = decode_wav(requests.get(last.output.audio.url, timeout=5).content)
    assert np.array_equal(np.concatenate(chunks), pcm)
    assert server.requests_of("tts")[0].headers["X-DashScope-SSE"] == "enable"


# --------------------------------------------------------------------------------------------- billing


@pytest.mark.parametrize(
    ("text", "billed"),
    [
        ("plain ascii", 11),
        ("你好，世界", 2 * 4 + 1),  # ideographs 2 each, the full-width comma 1
        ("こんにちは", 10),  # kana counted like ideographs (server default)
        ("안녕 hi", 4 + 3),
    ],
)
def test_billing_counts_cjk_letters_as_two(server: LoopbackDashScope, text: str, billed: int) -> None:
    rsp = tts(text)
    assert rsp.usage.characters == billed
    pcm, sr, _ = decode_wav(requests.get(rsp.output.audio.url, timeout=5).content)
    assert len(pcm) / sr == pytest.approx(seconds_for(billed), abs=1e-3)
    assert server.billed_characters_total == billed
    assert server.requests_of("tts")[0].billed_characters == billed


def test_kana_and_hangul_can_be_billed_single() -> None:
    with LoopbackDashScope(api_key=KEY, bill_kana_hangul_double=False) as srv:
        dashscope.base_http_api_url = srv.base_http_api_url
        assert tts("こんにちは世界").usage.characters == 5 + 4


# -------------------------------------------------------------------------------------- request errors


def test_http_errors_come_back_as_responses_not_exceptions(server: LoopbackDashScope) -> None:
    rsp = tts("Hello", voice="Nobody")

    assert rsp.status_code == 400 and rsp.code == "InvalidParameter"
    assert "Nobody" in rsp.message
    assert rsp.output is None and rsp.usage is None
    assert rsp.request_id == server.requests_of("tts")[0].request_id
    assert server.billed_characters_total == 0


@pytest.mark.parametrize(
    ("model", "voice"),
    [
        ("qwen3-tts-flash-2025-09-18", "Aiden"),
        ("qwen3-tts-instruct-flash", "Jennifer"),
        ("qwen3-tts-flash", "ono anna"),
    ],
)
def test_a_voice_the_model_does_not_offer_is_400(model: str, voice: str) -> None:
    rsp = tts("Hello", model=model, voice=voice)
    assert (rsp.status_code, rsp.code) == (400, "InvalidParameter")
    assert voice in rsp.message


def test_the_voice_table_is_per_model() -> None:
    assert tts("Hello", model="qwen3-tts-flash-2025-09-18", voice="Jennifer").status_code == 200
    assert tts("Hello", model="qwen3-tts-instruct-flash-2026-01-26", voice="Stella").status_code == 200
    assert tts("Hello", voice="Ono Anna", language_type="Japanese").status_code == 200


def test_a_wrong_key_is_401_and_an_unknown_model_404() -> None:
    bad_key = tts("Hello", key="sk-wrong")
    assert (bad_key.status_code, bad_key.code) == (401, "InvalidApiKey")
    unknown = tts("Hello", model="qwen3-tts-ultra")
    assert (unknown.status_code, unknown.code) == (404, "ModelNotFound")


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"language_type": "english"}, "InvalidParameter"),  # case matters
        ({"language_type": "Klingon"}, "InvalidParameter"),
        ({"text": ""}, "BadRequest.EmptyInput"),  # the SDK drops an empty text from input
        ({"text": "x" * 601}, "InvalidParameter"),
        ({"instructions": "speak slowly"}, "InvalidParameter"),  # flash is not an instruct model
    ],
)
def test_invalid_tts_requests_are_400(kwargs: dict[str, Any], code: str) -> None:
    text = kwargs.pop("text", "Hello")
    rsp = tts(text, **kwargs)
    assert (rsp.status_code, rsp.code) == (400, code)


def test_600_characters_and_instructions_on_instruct_models_are_accepted(server: LoopbackDashScope) -> None:
    assert tts("x" * 600).status_code == 200
    via_sdk = tts(
        "Hi", model="qwen3-tts-instruct-flash", instructions="Speak slowly.", optimize_instructions=True
    )
    assert via_sdk.status_code == 200
    assert server.requests_of("tts")[-1].body["parameters"]["instructions"] == "Speak slowly."
    # The documented placement, in input, is accepted too.
    body: dict[str, Any] = {
        "model": "qwen3-tts-instruct-flash",
        "input": {"text": "Hi", "voice": "Cherry", "instructions": "Calm."},
    }
    raw = requests.post(
        server.base_url + TTS_PATH, json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=5
    )
    assert raw.status_code == 200 and raw.json()["usage"]["characters"] == 2


# ------------------------------------------------------------------------------------- fault injection


def test_retry_after_is_visible_to_sdk_callers_through_response_headers(server: LoopbackDashScope) -> None:
    server.fail_next("tts", 429, retry_after=1.5, times=2)

    rsp = tts("Hello")
    assert (rsp.status_code, rsp.code) == (429, "Throttling.RateQuota")
    assert rsp.headers["Retry-After"] == "1.5"  # dashscope 2.0.2 copies the HTTP headers onto the response
    streamed = list(tts("Hello", stream=True))
    assert (
        len(streamed) == 1 and streamed[0].status_code == 429 and streamed[0].headers["Retry-After"] == "1.5"
    )

    assert tts("Hello").status_code == 200
    assert "Retry-After" not in tts("Hello").headers
    assert [r.injected for r in server.requests_of("tts")] == [True, True, False, False]
    assert server.billed_characters_total == 2 * 5


def test_fault_rate_gives_the_requested_mix_reproducibly_and_failures_are_not_billed(
    server: LoopbackDashScope,
) -> None:
    server.fault_rate("tts", {429: 0.2, 500: 0.1, 503: 0.05}, seed=1)
    statuses = [tts("Hello").status_code for _ in range(200)]

    mix = Counter(statuses)
    assert 0.13 <= mix[429] / 200 <= 0.27
    assert 0.05 <= mix[500] / 200 <= 0.15
    assert 0.01 <= mix[503] / 200 <= 0.10
    assert mix[200] == 200 - mix[429] - mix[500] - mix[503]
    codes = {r.status: r.code for r in server.requests_of("tts")}
    assert codes == {200: "", 429: "Throttling.RateQuota", 500: "InternalError", 503: "ServiceUnavailable"}
    assert server.billed_characters_total == 5 * mix[200]

    with LoopbackDashScope(api_key=KEY) as twin:
        twin.fault_rate("tts", {429: 0.2, 500: 0.1, 503: 0.05}, seed=1)
        dashscope.base_http_api_url = twin.base_http_api_url
        assert [tts("Hello").status_code for _ in range(40)] == statuses[:40]


def test_a_stream_can_fail_after_two_chunks(server: LoopbackDashScope) -> None:
    server.fail_mid_stream()
    parts = list(tts("A long enough line to need several chunks of audio.", stream=True))

    assert [p.status_code for p in parts] == [200, 200, 500]
    assert parts[-1].code == "InternalError" and parts[-1].output is None
    assert server.billed_characters_total == 0
    assert list(tts("Now it works.", stream=True))[-1].output.finish_reason == "stop"


def test_rpm_limit_throttles_within_the_sliding_window() -> None:
    with LoopbackDashScope(api_key=KEY, rpm_limit={"mt": 3}, rate_window_s=0.3) as srv:
        dashscope.base_http_api_url = srv.base_http_api_url
        first = [mt("hello").status_code for _ in range(4)]
        assert first == [200, 200, 200, 429]
        assert srv.requests_of("mt")[-1].code == "Throttling.RateQuota"
        time.sleep(0.35)
        assert mt("hello").status_code == 200


def test_delay_holds_requests_and_peak_concurrency_is_measured(server: LoopbackDashScope) -> None:
    server.delay("mt", 0.2)
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(mt("hi").status_code)) for _ in range(4)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start

    assert results == [200] * 4
    assert 0.2 <= elapsed < 0.75  # concurrent: serial would take 0.8 s
    assert server.peak_in_flight("mt") == 4 and server.in_flight("mt") == 0


# ------------------------------------------------------------------------------------------- downloads


def test_expired_or_tampered_urls_are_refused_like_oss(server: LoopbackDashScope) -> None:
    url = tts("Hello").output.audio.url
    assert requests.get(url, timeout=5).status_code == 200

    server.expire_urls = True
    expired = requests.get(url, timeout=5)
    assert expired.status_code == 403 and expired.headers["Content-Type"] == "application/xml"
    assert (
        "<Code>AccessDenied</Code>" in expired.text
        and "<Message>Request has expired.</Message>" in expired.text
    )
    server.expire_urls = False

    tampered = requests.get(url.replace("Signature=", "Signature=0"), timeout=5)
    assert tampered.status_code == 403 and "SignatureDoesNotMatch" in tampered.text
    assert requests.get(f"{server.base_url}/files/nope.wav", timeout=5).status_code == 404
    assert [r.status for r in server.requests_of("download")] == [200, 403, 403, 404]


def test_urls_past_their_expires_time_are_refused() -> None:
    with LoopbackDashScope(api_key=KEY, url_ttl_s=-1) as srv:
        dashscope.base_http_api_url = srv.base_http_api_url
        rsp = tts("Hello")
        assert rsp.output.audio.expires_at < time.time()
        assert "Request has expired." in requests.get(rsp.output.audio.url, timeout=5).text


# ----------------------------------------------------------------------------------------------- Qwen-MT


def test_mt_translates_into_the_target_script_and_applies_terms(server: LoopbackDashScope) -> None:
    terms = {"terms": [{"source": "Qwen", "target": "通义千问"}]}
    german = mt("Qwen reads the script aloud.", "German", options=terms)
    japanese = mt("Qwen reads the script aloud.", "Japanese", options=terms)

    assert german.status_code == 200 and german.output.choices[0].finish_reason == "stop"
    message = german.output.choices[0].message
    assert message.role == "assistant" and message.content == "(de) 通义千问 reads the script aloud."
    content = japanese.output.choices[0].message.content
    assert content.startswith("(ja) 通义千问") and "Qwen" not in content
    assert any("\u3040" <= ch <= "\u30ff" for ch in content) and "reads" not in content
    assert japanese.usage.total_tokens == japanese.usage.input_tokens + japanese.usage.output_tokens
    assert mt("Qwen reads the script aloud.", "Japanese", options=terms).output == japanese.output

    record = server.requests_of("mt")[0]
    assert record.path == MT_PATH
    assert record.body["parameters"]["translation_options"]["terms"] == terms["terms"]
    assert record.body["input"]["messages"] == [{"role": "user", "content": "Qwen reads the script aloud."}]


def test_mt_rejects_a_system_message_an_unknown_model_and_an_unknown_language() -> None:
    with_system = mt(
        "", messages=[{"role": "system", "content": "Translate."}, {"role": "user", "content": "Hi"}]
    )
    assert (with_system.status_code, with_system.code) == (400, "InvalidParameter")
    assert with_system.output is None
    assert mt("Hi", model="qwen-mt-ultra").status_code == 404
    assert (mt("Hi", "Klingon").status_code, mt("Hi", "Klingon").code) == (400, "InvalidParameter")
    bad_terms = mt("Hi", options={"terms": [{"source": "Hi"}]})
    assert (bad_terms.status_code, bad_terms.code) == (400, "InvalidParameter")


def test_mt_streams_the_whole_text_so_far() -> None:
    full = mt("The quick brown fox jumps over the lazy dog.", "French").output.choices[0].message.content
    parts = list(mt("The quick brown fox jumps over the lazy dog.", "French", stream=True))

    texts = [p.output.choices[0].message.content for p in parts]
    assert len(parts) > 2 and texts[-1] == full
    assert all(full.startswith(t) for t in texts)
    assert parts[-1].output.choices[0].finish_reason == "stop"


# -------------------------------------------------------------------------------------------- recording


def test_requests_are_recorded_without_the_key_and_reset_clears_them(server: LoopbackDashScope) -> None:
    tts("Hello")
    mt("Hello")
    server.fail_next("mt", 500)
    mt("Hello")

    assert (server.count("tts"), server.count("mt"), server.count("download"), server.count()) == (1, 2, 0, 3)
    record = server.requests_of("tts")[0]
    assert "Authorization" not in record.headers and KEY not in str(record.headers)
    assert record.body == {
        "model": "qwen3-tts-flash",
        "parameters": {},
        "input": {"text": "Hello", "voice": "Cherry", "language_type": "English"},
    }
    assert (record.method, record.path, record.status) == ("POST", TTS_PATH, 200)
    assert [(r.status, r.code) for r in server.requests_of("mt")] == [(200, ""), (500, "InternalError")]

    server.reset()
    assert server.count() == 0 and server.billed_characters_total == 0
    assert server.base_http_api_url == f"http://127.0.0.1:{server.port}/api/v1"
