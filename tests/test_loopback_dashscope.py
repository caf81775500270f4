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

from tests.loopback_dashscope import MT_PATH, SAMPLE_RATE, TTS_PATH, VOICE_PATH, LoopbackDashScope

VC_MODEL = "qwen3-tts-vc-2026-01-22"

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


# ---------------------------------------------------------------------------------------- voice cloning


def wav_data_uri(seconds: float = 3.5, rate: int = 24_000, channels: int = 1) -> str:
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.3 * np.sin(2 * np.pi * 180 * t)
    buf = io.BytesIO()
    sf.write(buf, np.stack([mono] * channels, axis=1), rate, format="WAV", subtype="PCM_16")
    return "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def enroll_call(**fields: Any) -> Any:
    """The customization endpoint through the SDK's generic service call (as models/ uses it)."""
    from dashscope.client.base_api import BaseApi

    model = fields.pop("model", "qwen-voice-enrollment")
    return BaseApi.call(
        model=model, input=fields, task_group="audio", task="tts", function="customization", api_key=KEY
    )


def enroll(name: str = "alice", **fields: Any) -> Any:
    fields = {"action": "create", "target_model": "qwen3-tts-vc-2026-01-22", "preferred_name": name,
              "audio": {"data": wav_data_uri()}, **fields}  # fmt: skip
    return enroll_call(**fields)


def test_enrollment_creates_lists_and_deletes_voices(server: LoopbackDashScope) -> None:
    created = enroll("alice", text="The reference words.", language="en")
    assert created.status_code == 200 and created.usage == {"count": 1}
    voice = created.output["voice"]
    assert voice.startswith("qwen-tts-vc-alice-voice-") and created.output["target_model"] == VC_MODEL
    other = enroll("bob").output["voice"]

    listed = enroll_call(action="list", page_size=10, page_index=0)
    assert [v["voice"] for v in listed.output["voice_list"]] == [voice, other]
    assert enroll_call(action="list", page_size=1, page_index=1).output["voice_list"][0]["voice"] == other
    assert server.enrolled_voices()[voice].text == "The reference words."
    assert server.enrolled_voices()[voice].sample_rate == 24_000

    assert enroll_call(action="delete", voice=voice).status_code == 200
    gone = enroll_call(action="delete", voice=voice)
    assert (gone.status_code, gone.code) == (404, "VoiceNotFound")
    assert list(server.enrolled_voices()) == [other]
    assert server.count("voice") == 6 and server.count("tts") == 0
    assert {r.path for r in server.requests_of("voice")} == {VOICE_PATH}


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"model": "qwen-voice-design"}, "qwen-voice-enrollment"),
        ({"action": "clone"}, "Unknown action"),
        ({"target_model": "qwen3-tts-flash"}, "target_model"),
        ({"preferred_name": "much-too-long-name"}, "preferred_name"),
        ({"preferred_name": "seventeen_chars_x"}, "preferred_name"),
        ({"audio": {"data": wav_data_uri(rate=16_000)}}, "24000 Hz"),
        ({"audio": {"data": wav_data_uri(channels=2)}}, "mono"),
        ({"audio": {"data": wav_data_uri(seconds=2.0)}}, "3-60 s"),
        ({"audio": {"data": wav_data_uri(seconds=61.0)}}, "3-60 s"),
        ({"audio": {"data": "data:audio/wav;base64,@@@"}}, "base64"),
        ({"audio": {"data": "https://example.com/a.wav"}}, "data URI"),
        ({"audio": {"data": "data:audio/wav;base64," + base64.b64encode(b"RIFFnope").decode()}}, "decoded"),
        ({"language": "Klingon"}, "language"),
    ],
)
def test_invalid_enrollments_are_400(server: LoopbackDashScope, fields: dict[str, Any], needle: str) -> None:
    rsp = enroll(**fields)
    assert (rsp.status_code, rsp.code) == (400, "InvalidParameter") and needle in rsp.message
    assert server.enrolled_voices() == {} and server.count("voice") == 1


def test_the_vc_model_speaks_enrolled_voices_only(server: LoopbackDashScope) -> None:
    voice = enroll().output["voice"]
    ok = tts("Hello in my own voice.", model=VC_MODEL, voice=voice, language_type="Japanese")
    assert ok.status_code == 200 and ok.usage.characters == 22
    pcm, sr, _ = decode_wav(requests.get(ok.output.audio.url, timeout=5).content)
    assert sr == SAMPLE_RATE and len(pcm) / sr == pytest.approx(seconds_for(22), abs=1e-3)
    for model, bad in [
        (VC_MODEL, "Cherry"),
        (VC_MODEL, "qwen-tts-vc-nobody-voice-1"),
        ("qwen3-tts-flash", voice),
    ]:
        rsp = tts("Hello", model=model, voice=bad)
        assert (rsp.status_code, rsp.code) == (400, "InvalidParameter") and bad in rsp.message
    enroll_call(action="delete", voice=voice)
    assert tts("Hello", model=VC_MODEL, voice=voice).status_code == 400
    assert tts("Hi", model=VC_MODEL, voice=voice, instructions="Slowly.").status_code == 400


# ------------------------------------------------------------------------------------------------- chat


def chat(messages: list[Any], model: str = "qwen-plus", **kw: Any) -> Any:
    return dashscope.Generation.call(
        model=model, api_key=KEY, messages=messages, result_format="message", **kw
    )


def test_chat_models_shorten_to_the_asked_length_or_echo(server: LoopbackDashScope) -> None:
    system = {"role": "system", "content": "You shorten subtitles."}
    ask = "Shorten it.\nMaximum length: 20 characters\nText: The quick brown fox jumps over the lazy dog."
    rsp = chat([system, {"role": "user", "content": ask}])
    assert rsp.status_code == 200
    assert rsp.output.choices[0].message.content == "The quick brown fox"  # 19 characters, whole words
    cjk = "Maximum length: 5 characters\nText: 今天天气很好，我们去公园散步吧。"
    assert (
        chat([{"role": "user", "content": cjk}], "qwen-flash").output.choices[0].message.content
        == "今天天气很"
    )
    short = "Maximum length: 80 characters\nText: Already short."
    assert chat([{"role": "user", "content": short}], "qwen-turbo").output.choices[0].message.content == (
        "Already short."
    )
    history = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "Just echo me."},
    ]
    assert chat(history).output.choices[0].message.content == "Just echo me."
    streamed = [p.output.choices[0].message.content for p in chat([system, {"role": "user", "content": ask}],
                                                                   stream=True)]  # fmt: skip
    assert streamed[-1] == "The quick brown fox" and len(streamed) == 3
    assert server.count("chat") == 5 and server.count("mt") == 0
    assert server.requests_of("chat")[0].body["input"]["messages"][0] == system


def test_chat_rejects_misplaced_system_messages_a_last_assistant_turn_and_empty_content() -> None:
    misplaced = chat([{"role": "user", "content": "a"}, {"role": "system", "content": "b"},
                      {"role": "user", "content": "c"}])  # fmt: skip
    assert (misplaced.status_code, misplaced.code) == (400, "InvalidParameter")
    assert chat([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]).status_code == 400
    assert chat([{"role": "tool", "content": "a"}]).status_code == 400
    assert chat([{"role": "user", "content": ""}]).code == "BadRequest.EmptyInput"
    # Qwen-MT on the same path keeps its own rules
    assert mt("Hello").status_code == 200
