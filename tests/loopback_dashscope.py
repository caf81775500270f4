"""A loopback DashScope server: the Qwen TTS and Qwen-MT HTTP APIs, offline, for tests and benchmarks.

`LoopbackDashScope` runs a `ThreadingHTTPServer` on 127.0.0.1 (random port, daemon thread) that answers the
exact paths and bodies the real `dashscope==2.0.2` SDK sends, and answers them the way the SDK parses them:

- ``POST /api/v1/services/aigc/multimodal-generation/generation``  (``MultiModalConversation.call``, TTS):
  JSON, or SSE when the request carries ``X-DashScope-SSE: enable``. The audio is fake but speech-like,
  deterministic in (text, voice), 24 kHz mono int16, and lasts ``seconds_per_char`` per billed character.
- ``GET /files/<id>.wav?Expires=<unix>&Signature=<hex>``: the signed result URL, with OSS-style XML errors.
- ``POST /api/v1/services/aigc/text-generation/generation``  (``Generation.call``, Qwen-MT): a deterministic
  fake translation that is visibly in the target language and applies ``translation_options.terms``.
  The same path serves the chat models qwen-flash/qwen-plus/qwen-turbo (kind "chat", system messages
  allowed) with a deterministic reply: a request holding the lines ``Maximum length: N characters`` and
  ``Text: ...`` gets that text cut to at most N characters at a word boundary (a character boundary for
  CJK text); anything else is echoed back.
- ``POST /api/v1/services/audio/tts/customization``  (model ``qwen-voice-enrollment``, kind "voice"): voice
  cloning enrollment with the actions create, list and delete. An enrolled voice id is then accepted by
  the TTS path with its target model (``qwen3-tts-vc-2026-01-22``), and only there.

It validates like the real service (key, model, voice per model, language_type, text length, the single user
message of Qwen-MT, the enrollment audio), bills TTS like the real service, records every request, and injects
faults, delays and rate limits on demand. It is the independent peer that checks the project's client: it
shares no code with it.

    with LoopbackDashScope() as server:
        dashscope.base_http_api_url = server.base_http_api_url
        rsp = dashscope.MultiModalConversation.call(model="qwen3-tts-flash", api_key=server.api_key,
                                                    text="Hello", voice="Cherry", language_type="English")

Facts it encodes come from the public Model Studio docs and the SDK source (see docs/qwen-reference.md).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import io
import json
import math
import random
import re
import secrets
import socket
import threading
import time
import uuid
import wave
import zlib
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, cast
from urllib.parse import parse_qs, urlsplit

import numpy as np
from numpy.typing import NDArray

API_PREFIX: Final = "/api/v1"
TTS_PATH: Final = f"{API_PREFIX}/services/aigc/multimodal-generation/generation"
MT_PATH: Final = f"{API_PREFIX}/services/aigc/text-generation/generation"
VOICE_PATH: Final = f"{API_PREFIX}/services/audio/tts/customization"
FILES_PREFIX: Final = "/files/"

SAMPLE_RATE: Final = 24_000  # Hz; qwen3-tts-flash returns 24 kHz mono
MAX_TTS_CHARS: Final = 600  # input.text limit per request, counted in characters (code points)
MIN_DURATION_S: Final = 0.4
EDGE_SILENCE_S: Final = 0.05  # leading and trailing silence in every clip
SSE_CHUNK_S: Final = (0.10, 0.20, 0.15)  # SSE audio chunk lengths, cycled: clients must not assume one size

KINDS: Final = ("tts", "mt", "download", "voice", "chat")

# Model -> column of the voice table (qwen-reference.md section 2). "F" = flash and its 2025-11-27 snapshot,
# "9" = the 2025-09-18 snapshot, "I" = instruct-flash.
TTS_MODELS: Final[Mapping[str, str]] = {
    "qwen3-tts-flash": "F",
    "qwen3-tts-flash-2025-11-27": "F",
    "qwen3-tts-flash-2025-09-18": "9",
    "qwen3-tts-instruct-flash": "I",
    "qwen3-tts-instruct-flash-2026-01-26": "I",
}
INSTRUCT_MODELS: Final = frozenset(m for m, column in TTS_MODELS.items() if column == "I")
MT_MODELS: Final = frozenset({"qwen-mt-flash", "qwen-mt-plus", "qwen-mt-lite", "qwen-mt-turbo"})
CHAT_MODELS: Final = frozenset({"qwen-flash", "qwen-plus", "qwen-turbo"})
CHAT_ROLES: Final = frozenset({"system", "user", "assistant"})

# Voice cloning (qwen-reference.md section 4): the enrollment model, the synthesis models an enrolled voice
# may target (the voice works with its target model only), and the documented limits on the sample.
ENROLLMENT_MODEL: Final = "qwen-voice-enrollment"
VC_MODELS: Final = frozenset({"qwen3-tts-vc-2026-01-22"})
ENROLLMENT_ACTIONS: Final = frozenset({"create", "list", "delete"})
PREFERRED_NAME_RE: Final = re.compile(r"[A-Za-z0-9_]{1,16}")
ENROLLMENT_MIN_RATE: Final = 24_000  # Hz
ENROLLMENT_MIN_S: Final = 3.0
ENROLLMENT_MAX_S: Final = 60.0
ENROLLMENT_MAX_BYTES: Final = 10 * 1024 * 1024
ENROLLMENT_LANGUAGES: Final = frozenset({"zh", "en", "de", "it", "pt", "es", "ja", "ko", "fr", "ru"})

# Voice -> models that offer it (qwen-reference.md section 2; T/Tl: legacy qwen-tts columns, kept as data).
_VOICE_MODELS: Final[Mapping[str, str]] = {
    "Cherry": "I F 9 T", "Serena": "I F T", "Ethan": "I F 9 T", "Chelsie": "I F T", "Momo": "I F",
    "Vivian": "I F", "Moon": "I F", "Maia": "I F", "Kai": "I F", "Nofish": "I F 9", "Bella": "I F",
    "Eldric Sage": "I F", "Mia": "I F", "Mochi": "I F", "Bellona": "I F", "Vincent": "I F", "Bunny": "I F",
    "Neil": "I F", "Elias": "I F 9", "Arthur": "I F", "Nini": "I F", "Seren": "I F", "Pip": "I F",
    "Stella": "I F", "Jennifer": "F 9", "Ryan": "F 9", "Katerina": "F 9", "Aiden": "F", "Bodega": "F",
    "Sonrisa": "F", "Alek": "F", "Dolce": "F", "Sohee": "F", "Ono Anna": "F", "Lenn": "F", "Emilien": "F",
    "Andre": "F", "Radio Gol": "F", "Jada": "F 9 Tl", "Dylan": "F 9 Tl", "Li": "F 9", "Marcus": "F 9",
    "Roy": "F 9", "Peter": "F 9", "Sunny": "F 9 Tl", "Eric": "F 9", "Rocky": "F 9", "Kiki": "F 9",
}  # fmt: skip
VOICES_BY_MODEL: Final[Mapping[str, frozenset[str]]] = {
    model: frozenset(v for v, cols in _VOICE_MODELS.items() if column in cols.split())
    for model, column in TTS_MODELS.items()
}

LANGUAGE_TYPES: Final = frozenset(
    {"Auto", "Chinese", "English", "German", "Italian", "Portuguese", "Spanish", "Japanese", "Korean",
     "French", "Russian"}
)  # fmt: skip
MT_LANGUAGES: Final[Mapping[str, str]] = {
    "Chinese": "zh", "English": "en", "Japanese": "ja", "Korean": "ko", "French": "fr", "Spanish": "es",
    "German": "de", "Italian": "it", "Portuguese": "pt", "Russian": "ru",
}  # fmt: skip

# Fault statuses that fault_rate() knows, with the codes the real service sends for them.
FAULT_CODES: Final[Mapping[int, str]] = {
    408: "RequestTimeOut",
    429: "Throttling.RateQuota",
    500: "InternalError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}
_DEFAULT_MESSAGES: Final[Mapping[str, str]] = {
    "Throttling.RateQuota": "Requests rate limit exceeded, please try again later.",
    "Throttling": "Requests throttling triggered.",
    "InternalError": "An internal error has occured, please try again later.",
    "ServiceUnavailable": "The service is temporarily unavailable, please try again later.",
    "RequestTimeOut": "Request timed out, please try again later.",
}


@dataclass
class RecordedRequest:
    """One request the server answered (recorded when its response is complete).

    Attributes:
        kind: "tts", "mt", "chat", "voice", "download" or "other".
        method, path: as received (path includes the query string).
        headers: request headers, Authorization removed.
        body: the parsed JSON body (None for GET or unparsable bodies).
        stream: the request asked for SSE.
        status: HTTP status sent; for a stream cut by an ``event:error`` it is that event's status (500).
        code: error code sent ("" on success).
        injected: the failure came from fault injection or the rate limiter, not from validation.
        billed_characters: usage.characters billed for a successful TTS request, else 0.
        usage: the usage object returned, if any.
        request_id: the request_id returned ("" for downloads).
        started_at, finished_at: time.monotonic() stamps.
    """

    kind: str
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    stream: bool
    started_at: float
    status: int = 0
    code: str = ""
    injected: bool = False
    billed_characters: int = 0
    usage: dict[str, int] | None = None
    request_id: str = ""
    finished_at: float = 0.0


class _ApiError(Exception):
    """An error answer: DashScope JSON for the API, OSS XML for downloads."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        injected: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.injected = injected
        self.retry_after = retry_after


@dataclass
class _QueuedFault:
    status: int
    code: str
    message: str
    retry_after: float | None
    remaining: int


@dataclass
class _RandomFaults:
    rates: list[tuple[int, float]]  # (status, probability)
    rng: random.Random
    retry_after: float | None


@dataclass
class _StoredFile:
    wav: bytes
    expires_at: int


@dataclass(frozen=True)
class EnrolledVoice:
    """A voice created through the enrollment endpoint (``LoopbackDashScope.enrolled_voices()`` values)."""

    voice: str
    target_model: str
    preferred_name: str
    created_at: float  # time.time()
    sample_rate: int
    duration_s: float
    text: str | None
    language: str | None


# --------------------------------------------------------------------------------------------- text helpers

# Billing: the docs say each CJK ideograph counts 2 and every other character 1. Whether kana and hangul
# count 2 is not documented (UNCONFIRMED); they are full-width scripts billed like ideographs by most
# CJK-aware meters, so this server counts them 2 by default (constructor flag `bill_kana_hangul_double`).
# CJK punctuation (。、，) and full-width forms count 1: the docs only single out ideographs.
_IDEOGRAPH_RANGES: Final = (
    (0x3400, 0x4DBF),  # CJK Unified Ideographs Extension A
    (0x4E00, 0x9FFF),  # CJK Unified Ideographs
    (0xF900, 0xFAFF),  # CJK Compatibility Ideographs
    (0x20000, 0x3FFFF),  # Extensions B.. and supplementary planes of ideographs
)
_KANA_HANGUL_RANGES: Final = (
    (0x3040, 0x309F),  # Hiragana
    (0x30A0, 0x30FF),  # Katakana
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0xFF66, 0xFF9F),  # Half-width katakana
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x3130, 0x318F),  # Hangul compatibility Jamo
    (0xAC00, 0xD7AF),  # Hangul syllables
)


def _in_ranges(cp: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(lo <= cp <= hi for lo, hi in ranges)


def _is_wide_letter(ch: str) -> bool:
    cp = ord(ch)
    return _in_ranges(cp, _IDEOGRAPH_RANGES) or _in_ranges(cp, _KANA_HANGUL_RANGES)


def _bill(text: str, kana_hangul_double: bool) -> int:
    total = 0
    for ch in text:
        cp = ord(ch)
        double = _in_ranges(cp, _IDEOGRAPH_RANGES) or (
            kana_hangul_double and _in_ranges(cp, _KANA_HANGUL_RANGES)
        )
        total += 2 if double else 1
    return total


_TOKEN_RE: Final = re.compile(r"[^\W_]+(?:'[^\W_]+)*|\s+|.", re.DOTALL)


def _tokens(text: str) -> Iterator[str]:
    """Words, whitespace runs and single other characters; CJK letters come out one per token."""
    for match in _TOKEN_RE.finditer(text):
        tok = match.group()
        if any(_is_wide_letter(c) for c in tok):
            yield from _split_wide(tok)
        else:
            yield tok


def _split_wide(tok: str) -> Iterator[str]:
    run = ""
    for ch in tok:
        if _is_wide_letter(ch):
            if run:
                yield run
                run = ""
            yield ch
        else:
            run += ch
    if run:
        yield run


def _approx_tokens(text: str) -> int:
    """Rough Qwen token count: one per CJK letter or symbol, one per four letters of a word."""
    count = 0
    for tok in _tokens(text):
        if tok.isspace():
            continue
        count += max(1, math.ceil(len(tok) / 4)) if len(tok) > 1 else 1
    return max(count, 1)


# ------------------------------------------------------------------------------------ fake translation

_CJK_ALPHABETS: Final[Mapping[str, str]] = {
    "Chinese": (
        "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就"
        "那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起"
        "还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老"
    ),
    "Japanese": (
        "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめも"
        "やゆよらりるれろわをんアイウエオカキクケコサシスセソタチツテトナニヌネ"
        "ノハヒフヘホマミムメモヤユヨラリルレロワン"
    ),
    "Korean": (
        "가나다라마바사아자차카타파하거너더러머버서어저처커터퍼허고노도로모보"
        "소오조초코토포호구누두루무부수우주추쿠투푸후기니디리미비시이지치키티"
        "피히한국말글"
    ),
}
_CJK_PUNCTUATION: Final[Mapping[str, Mapping[str, str]]] = {
    "Chinese": {".": "。", ",": "，", "!": "！", "?": "？", ":": "：", ";": "；"},
    "Japanese": {".": "。", ",": "、", "!": "！", "?": "？", ":": "：", ";": "；"},
}
_CYRILLIC: Final[Mapping[str, str]] = {
    "a": "а", "b": "б", "c": "ц", "d": "д", "e": "е", "f": "ф", "g": "г", "h": "х", "i": "и", "j": "й",
    "k": "к", "l": "л", "m": "м", "n": "н", "o": "о", "p": "п", "q": "к", "r": "р", "s": "с", "t": "т",
    "u": "у", "v": "в", "w": "в", "x": "кс", "y": "ы", "z": "з",
}  # fmt: skip


def _cjk_word(word: str, target: str) -> str:
    """A fixed 1- or 2-letter CJK rendering of one source word (or one source CJK letter)."""
    alphabet = _CJK_ALPHABETS[target]
    h = zlib.crc32(word.casefold().encode("utf-8"))
    n = 1 if len(word) <= 3 else 2
    return "".join(alphabet[(h >> (11 * i)) % len(alphabet)] for i in range(n))


def _to_cyrillic(word: str) -> str:
    out = []
    for ch in word:
        mapped = _CYRILLIC.get(ch.lower(), ch)
        out.append(mapped.upper() if ch.isupper() and mapped != ch else mapped)
    return "".join(out)


def _transform(segment: str, target: str) -> str:
    if target in _CJK_ALPHABETS:
        punct = _CJK_PUNCTUATION.get(target, {})
        out: list[str] = []
        for tok in _tokens(segment):
            if tok.isspace():
                out.append(" " if target == "Korean" else "")
            elif tok.isdigit():
                out.append(tok)  # numbers survive translation
            elif tok[0].isalnum() or _is_wide_letter(tok[0]):
                out.append(_cjk_word(tok, target))
            else:
                out.append(punct.get(tok, tok))
        return "".join(out)
    if target == "Russian":
        return "".join(_to_cyrillic(t) if t[0].isalpha() else t for t in _tokens(segment))
    return segment


def _fake_translate(text: str, target: str, terms: list[tuple[str, str]]) -> str:
    """Deterministic 'translation': a language marker, then the text rendered in the target's script.

    Glossary terms (matched case-insensitively, longest first) are replaced verbatim by their targets."""
    pieces: list[str] = []
    if terms:
        lookup = {src.casefold(): dst for src, dst in terms}
        pattern = re.compile(
            "|".join(re.escape(src) for src in sorted(lookup, key=len, reverse=True)), re.IGNORECASE
        )
        pos = 0
        for match in pattern.finditer(text):
            pieces.append(_transform(text[pos : match.start()], target))
            pieces.append(lookup.get(match.group().casefold(), match.group()))
            pos = match.end()
        pieces.append(_transform(text[pos:], target))
    else:
        pieces.append(_transform(text, target))
    return f"({MT_LANGUAGES[target]}) " + "".join(pieces).strip()


# ------------------------------------------------------------------------------------------ fake chat

_MAX_LENGTH_RE: Final = re.compile(r"^\s*Maximum length:\s*(\d+)\s*characters\b")
_TEXT_PREFIX: Final = "Text: "


def _shorten(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters: after the last whole word that fits, or at a character for
    CJK text (no spaces to cut at) and for a first word longer than the limit. Trailing separators go."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    if any(_is_wide_letter(ch) for ch in text):
        cut = text[:limit]
    else:
        cut = ""
        for word in text.split(" "):
            candidate = f"{cut} {word}" if cut else word
            if len(candidate) > limit:
                break
            cut = candidate
        cut = cut or text[:limit]
    return cut.rstrip(" ,;:、，；：")


def _fake_chat_reply(messages: list[dict[str, Any]]) -> str:
    """Deterministic chat answer: the `Text: ` line shortened to the `Maximum length: N characters` line when
    the last user message has both; otherwise that message echoed back."""
    content = str(messages[-1]["content"])
    limit: int | None = None
    text: str | None = None
    for line in content.splitlines():
        match = _MAX_LENGTH_RE.match(line)
        if match and limit is None:
            limit = int(match.group(1))
        elif line.startswith(_TEXT_PREFIX) and text is None:
            text = line[len(_TEXT_PREFIX) :]
    if limit is not None and text is not None:
        return _shorten(text, limit)
    return content


# ---------------------------------------------------------------------------------------------- audio


def _synthesize(text: str, voice: str, n_samples: int) -> NDArray[np.int16]:
    """Deterministic voiced-like signal: 140-220 Hz harmonic tone, ~4 Hz syllable envelope, 50 ms silences."""
    edge = round(EDGE_SILENCE_S * SAMPLE_RATE)
    voiced = max(n_samples - 2 * edge, 0)
    pcm = np.zeros(n_samples, dtype=np.int16)
    if voiced == 0:
        return pcm
    t = np.arange(voiced, dtype=np.float64) / SAMPLE_RATE
    voice_hash = zlib.crc32(voice.encode("utf-8"))
    text_hash = zlib.crc32(text.encode("utf-8"))
    f0_base = 150.0 + voice_hash % 56  # 150-205 Hz; the +-6 % intonation keeps f0 inside 140-220 Hz
    f0 = f0_base * (1.0 + 0.06 * np.sin(2 * np.pi * 0.5 * t + (text_hash % 628) / 100.0))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    tone = sum(0.6 ** (k - 1) * np.sin(k * phase) for k in range(1, 6))
    syllable_hz = 3.5 + (text_hash % 1000) / 1000.0  # 3.5-4.5 Hz
    envelope = 0.1 + 0.9 * 0.5 * (1.0 - np.cos(2 * np.pi * syllable_hz * t))
    ramp = min(round(0.01 * SAMPLE_RATE), voiced // 2)  # 10 ms fades: no clicks at the edges
    fade = np.ones(voiced)
    if ramp > 0:
        fade[:ramp] = np.linspace(0.0, 1.0, ramp)
        fade[-ramp:] = np.linspace(1.0, 0.0, ramp)
    signal = tone / np.max(np.abs(tone)) * envelope * fade * 0.3
    pcm[edge : edge + voiced] = np.round(signal * 32767).astype(np.int16)
    return pcm


def _wav_bytes(pcm: NDArray[np.int16]) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm.astype("<i2").tobytes())
    return buf.getvalue()


def _sse_chunks(pcm: NDArray[np.int16]) -> Iterator[NDArray[np.int16]]:
    start, i = 0, 0
    while start < len(pcm):
        step = round(SSE_CHUNK_S[i % len(SSE_CHUNK_S)] * SAMPLE_RATE)
        yield pcm[start : start + step]
        start += step
        i += 1


# --------------------------------------------------------------------------------------------- server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # close() unblocks keep-alive handler threads itself

    def __init__(self, app: LoopbackDashScope) -> None:
        self.app = app
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # idle keep-alive connections end after a minute
    # Headers and body go out in separate writes: with Nagle on, the client's delayed ACK stalls every
    # keep-alive response by ~40 ms (measured), which would distort throughput benchmarks.
    disable_nagle_algorithm = True
    response_started = False  # set once a status line went out for the current request

    @property
    def app(self) -> LoopbackDashScope:
        return cast(_Server, self.server).app

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        pass

    def setup(self) -> None:
        super().setup()
        self.app._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.app._untrack(self.connection)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.response_started = False
        self.app._serve_post(self)

    def do_GET(self) -> None:  # noqa: N802
        self.response_started = False
        self.app._serve_get(self)

    def send_response(self, code: int, message: str | None = None) -> None:
        self.response_started = True
        super().send_response(code, message)

    # -- writing helpers
    def send_body(
        self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def send_json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        self.send_body(status, body, "application/json;charset=UTF-8", headers)

    def start_sse(self, request_id: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream;charset=UTF-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Request-Id", request_id)
        self.end_headers()

    def send_event(self, event_id: int, payload: Any, *, event: str = "result", status: int = 200) -> None:
        lines = [f"id:{event_id}", f"event:{event}", f":HTTP_STATUS/{status}"]
        if event == "error":
            lines.append(f"status:{status}")
        lines.append("data:" + json.dumps(payload, ensure_ascii=False))
        data = ("\n".join(lines) + "\n\n").encode("utf-8")
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def end_sse(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class LoopbackDashScope:
    """A fake DashScope (Qwen TTS + Qwen-MT + result-file host) on 127.0.0.1, started on construction.

    Args:
        api_key: the only key accepted (``Authorization: Bearer <api_key>``); others get 401 InvalidApiKey.
        seconds_per_char: audio seconds per billed character (at least MIN_DURATION_S per clip).
        rpm_limit: optional requests-per-window limit per kind ("tts", "mt", "download").
        rate_window_s: the sliding window of rpm_limit (60 s like the real quota; shorten it in tests).
        url_ttl_s: lifetime of result URLs (Expires = now + url_ttl_s; the real service gives 24 h).
        sse_chunk_interval_s: pause between SSE events, to emulate real-time streaming.
        bill_kana_hangul_double: bill kana and hangul as 2 characters, like CJK ideographs (UNCONFIRMED).

    Attributes:
        expire_urls: set True to make every result URL answer 403 "Request has expired." like OSS.

    Result WAVs are kept in memory for the server's lifetime (about 48 kB per second of audio).
    """

    def __init__(
        self,
        api_key: str = "sk-loopback",
        *,
        seconds_per_char: float = 0.06,
        rpm_limit: Mapping[str, int] | None = None,
        rate_window_s: float = 60.0,
        url_ttl_s: int = 86_400,
        sse_chunk_interval_s: float = 0.0,
        bill_kana_hangul_double: bool = True,
    ) -> None:
        self.api_key = api_key
        self.seconds_per_char = seconds_per_char
        self.rate_window_s = rate_window_s
        self.url_ttl_s = url_ttl_s
        self.sse_chunk_interval_s = sse_chunk_interval_s
        self.bill_kana_hangul_double = bill_kana_hangul_double
        self.expire_urls = False

        self._lock = threading.Lock()
        self._records: list[RecordedRequest] = []
        self._files: dict[str, _StoredFile] = {}
        self._voices: dict[str, EnrolledVoice] = {}
        self._secret = secrets.token_bytes(16)
        self._queued: dict[str, list[_QueuedFault]] = {k: [] for k in KINDS}
        self._random_faults: dict[str, _RandomFaults] = {}
        self._delays: dict[str, float] = {}
        self._mid_stream_failures = 0
        self._rpm_limit: dict[str, int] = {}
        self._window: dict[str, deque[float]] = {k: deque() for k in KINDS}
        self._in_flight: dict[str, int] = dict.fromkeys(KINDS, 0)
        self._peak_in_flight: dict[str, int] = dict.fromkeys(KINDS, 0)
        self._connections: set[socket.socket] = set()
        for kind, limit in (rpm_limit or {}).items():
            self.set_rpm_limit(kind, limit)

        self._httpd = _Server(self)
        self._closed = False
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="loopback-dashscope", daemon=True
        )
        self._thread.start()

    # ---------------------------------------------------------------------------------- lifecycle
    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``"""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_http_api_url(self) -> str:
        """The value for ``dashscope.base_http_api_url``: ``http://127.0.0.1:<port>/api/v1``."""
        return self.base_url + API_PREFIX

    def close(self) -> None:
        """Stop serving and drop open keep-alive connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> LoopbackDashScope:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------------------- inspection
    def requests_of(self, kind: str | None = None) -> list[RecordedRequest]:
        """Completed requests, oldest first; all kinds when kind is None."""
        with self._lock:
            return [r for r in self._records if kind is None or r.kind == kind]

    def count(self, kind: str | None = None) -> int:
        """How many requests of that kind were answered, successful or not."""
        return len(self.requests_of(kind))

    def enrolled_voices(self) -> dict[str, EnrolledVoice]:
        """Voices created through the enrollment endpoint and not deleted, by voice id."""
        with self._lock:
            return dict(self._voices)

    @property
    def billed_characters_total(self) -> int:
        """Sum of usage.characters over successful TTS requests (injected failures are never billed)."""
        return sum(r.billed_characters for r in self.requests_of("tts"))

    def in_flight(self, kind: str) -> int:
        """Requests of that kind being served right now."""
        with self._lock:
            return self._in_flight[kind]

    def peak_in_flight(self, kind: str) -> int:
        """The most requests of that kind served at once since the last reset()."""
        with self._lock:
            return self._peak_in_flight[kind]

    def reset(self) -> None:
        """Forget records, injected faults and delays, expire_urls, rate windows and peak concurrency.

        Stored result files, enrolled voices, rpm limits and constructor settings are kept."""
        with self._lock:
            self._records.clear()
            for queue in self._queued.values():
                queue.clear()
            self._random_faults.clear()
            self._delays.clear()
            self._mid_stream_failures = 0
            for window in self._window.values():
                window.clear()
            for kind in KINDS:
                self._peak_in_flight[kind] = self._in_flight[kind]
            self.expire_urls = False

    # ----------------------------------------------------------------------------- fault injection
    def fail_next(
        self,
        kind: str,
        status: int,
        code: str | None = None,
        times: int = 1,
        retry_after: float | None = None,
        message: str | None = None,
    ) -> None:
        """Make the next `times` requests of `kind` fail with `status` and body {code, message, request_id}.

        `code` defaults from the status (429 Throttling.RateQuota, 500 InternalError, ...). With retry_after,
        the answer carries ``Retry-After: <seconds>`` (fractions allowed, for fast tests). Calls queue up.
        """
        _check_kind(kind)
        if times < 1:
            raise ValueError(f"fail_next: times must be >= 1, got {times}")
        code = code or FAULT_CODES.get(status, "InternalError")
        message = message or _DEFAULT_MESSAGES.get(code, f"Injected fault {code}.")
        with self._lock:
            self._queued[kind].append(_QueuedFault(status, code, message, retry_after, times))

    def fault_rate(
        self,
        kind: str,
        rates: Mapping[int, float] | None,
        seed: int = 0,
        retry_after: float | None = None,
    ) -> None:
        """Fail each request of `kind` at random: {429: 0.2, 500: 0.1} fails 20 % with 429 and 10 % with 500.

        Draws come from random.Random(seed), one per request, so a sequential client sees a reproducible
        pattern. Statuses must be in FAULT_CODES. None or {} turns random faults off."""
        _check_kind(kind)
        with self._lock:
            if not rates:
                self._random_faults.pop(kind, None)
                return
            unknown = set(rates) - set(FAULT_CODES)
            if unknown:
                raise ValueError(f"fault_rate: no known code for status {sorted(unknown)}")
            if any(p < 0 for p in rates.values()) or sum(rates.values()) > 1.0:
                raise ValueError("fault_rate: probabilities must be >= 0 and sum to at most 1")
            self._random_faults[kind] = _RandomFaults(sorted(rates.items()), random.Random(seed), retry_after)

    def delay(self, kind: str, seconds: float) -> None:
        """Hold every request of `kind` for `seconds` before answering (0 turns it off)."""
        _check_kind(kind)
        with self._lock:
            if seconds > 0:
                self._delays[kind] = seconds
            else:
                self._delays.pop(kind, None)

    def fail_mid_stream(self, times: int = 1) -> None:
        """The next `times` SSE TTS streams send two audio chunks, then ``event:error`` InternalError."""
        with self._lock:
            self._mid_stream_failures += times

    def set_rpm_limit(self, kind: str, limit: int | None) -> None:
        """Answer 429 Throttling.RateQuota to requests beyond `limit` within any sliding rate_window_s."""
        _check_kind(kind)
        with self._lock:
            if limit is None:
                self._rpm_limit.pop(kind, None)
            else:
                self._rpm_limit[kind] = limit

    # ------------------------------------------------------------------------------- internals
    def _track(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.add(conn)

    def _untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)

    def _admit(self, kind: str) -> None:
        """Apply queued faults, random faults and the rate limit, in that order; raise _ApiError to fail."""
        with self._lock:
            queue = self._queued.get(kind)
            if queue:
                fault = queue[0]
                fault.remaining -= 1
                if fault.remaining <= 0:
                    queue.pop(0)
                raise _ApiError(
                    fault.status, fault.code, fault.message, injected=True, retry_after=fault.retry_after
                )
            random_faults = self._random_faults.get(kind)
            if random_faults is not None:
                draw = random_faults.rng.random()
                threshold = 0.0
                for status, probability in random_faults.rates:
                    threshold += probability
                    if draw < threshold:
                        code = FAULT_CODES[status]
                        raise _ApiError(
                            status,
                            code,
                            _DEFAULT_MESSAGES.get(code, f"Injected fault {code}."),
                            injected=True,
                            retry_after=random_faults.retry_after,
                        )
            limit = self._rpm_limit.get(kind)
            if limit is not None:
                now = time.monotonic()
                window = self._window[kind]
                while window and window[0] <= now - self.rate_window_s:
                    window.popleft()
                if len(window) >= limit:
                    raise _ApiError(
                        429, "Throttling.RateQuota", _DEFAULT_MESSAGES["Throttling.RateQuota"], injected=True
                    )
                window.append(now)

    def _enter(self, kind: str) -> float:
        with self._lock:
            if kind in self._in_flight:
                self._in_flight[kind] += 1
                self._peak_in_flight[kind] = max(self._peak_in_flight[kind], self._in_flight[kind])
            return self._delays.get(kind, 0.0)

    def _finish(self, record: RecordedRequest) -> None:
        """Publish the record. Called just before the last bytes of a response go out, so a client that has
        its answer always finds the request recorded (and counted, and billed). Idempotent."""
        if record.finished_at:
            return
        record.finished_at = time.monotonic()
        with self._lock:
            if record.kind in self._in_flight:
                self._in_flight[record.kind] -= 1
            self._records.append(record)

    @staticmethod
    def _new_record(h: _Handler, kind: str, body: Any) -> RecordedRequest:
        headers = {k: v for k, v in h.headers.items() if k.lower() != "authorization"}
        stream = h.headers.get("X-DashScope-SSE", "").strip().lower() == "enable"
        return RecordedRequest(kind, h.command, h.path, headers, body, stream, time.monotonic())

    # -- POST: the API endpoints
    def _serve_post(self, h: _Handler) -> None:
        path = urlsplit(h.path).path.rstrip("/")
        kind = {TTS_PATH: "tts", MT_PATH: "mt", VOICE_PATH: "voice"}.get(path, "other")
        raw = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        body: Any
        try:
            body = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError):
            body = None
        if kind == "mt" and isinstance(body, dict) and body.get("model") in CHAT_MODELS:
            kind = "chat"  # one path, two families: Qwen-MT and the general chat models
        record = self._new_record(h, kind, body)
        record.request_id = str(uuid.uuid4())
        pause = self._enter(kind)
        try:
            if pause:
                time.sleep(pause)
            try:
                if kind == "other":
                    raise _ApiError(404, "NotFound", f"Not found: {path}")
                if h.headers.get("Authorization", "") != f"Bearer {self.api_key}":
                    raise _ApiError(401, "InvalidApiKey", "Invalid API-key provided.")
                self._admit(kind)
                if not isinstance(body, dict):
                    raise _ApiError(400, "InvalidParameter", "The request body is not a JSON object.")
                if kind == "tts":
                    self._serve_tts(h, body, record)
                elif kind == "voice":
                    self._serve_voice(h, body, record)
                elif kind == "chat":
                    self._serve_chat(h, body, record)
                else:
                    self._serve_mt(h, body, record)
            except _ApiError as err:
                headers = {}
                if err.retry_after is not None:
                    headers["Retry-After"] = f"{err.retry_after:g}"
                payload = {"code": err.code, "message": err.message, "request_id": record.request_id}
                record.status, record.code, record.injected = err.status, err.code, err.injected
                self._finish(record)
                h.send_json(err.status, payload, headers)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True  # the client went away; the record keeps what was attempted
        except Exception as exc:  # a bug in this server: answer like the real service, then surface it
            record.status, record.code = 500, "InternalError"
            self._finish(record)
            if not h.response_started:
                h.send_json(500, {"code": "InternalError", "message": f"loopback server bug: {exc!r}",
                                  "request_id": record.request_id})  # fmt: skip
            h.close_connection = True
            raise
        finally:
            self._finish(record)

    def _serve_tts(self, h: _Handler, body: dict[str, Any], record: RecordedRequest) -> None:
        model = body.get("model")
        if not isinstance(model, str) or (model not in TTS_MODELS and model not in VC_MODELS):
            raise _ApiError(404, "ModelNotFound", f"Model not exist: {model}")
        inp = body.get("input")
        params = body.get("parameters") or {}
        if not isinstance(inp, dict) or not isinstance(params, dict):
            raise _ApiError(400, "InvalidParameter", "input and parameters must be JSON objects.")
        text = inp.get("text")
        if text is None or text == "":
            raise _ApiError(400, "BadRequest.EmptyInput", "Required input parameter missing or empty: text.")
        if not isinstance(text, str):
            raise _ApiError(400, "InvalidParameter", "input.text must be a string.")
        if len(text) > MAX_TTS_CHARS:
            raise _ApiError(
                400,
                "InvalidParameter",
                f"Range of input length should be [1, {MAX_TTS_CHARS}], got {len(text)}.",
            )
        voice = inp.get("voice")
        if not isinstance(voice, str) or not voice:
            raise _ApiError(400, "InvalidParameter", "Required parameter missing: voice.")
        if model in VC_MODELS:  # enrolled voices only, each with the model it was enrolled for
            with self._lock:
                enrolled = self._voices.get(voice)
            if enrolled is None or enrolled.target_model != model:
                raise _ApiError(
                    400, "InvalidParameter", f"Voice '{voice}' is not an enrolled voice of model '{model}'."
                )
        elif voice not in VOICES_BY_MODEL[model]:
            raise _ApiError(400, "InvalidParameter", f"Voice '{voice}' is not supported by model '{model}'.")
        language_type = inp.get("language_type", params.get("language_type", "Auto"))
        if language_type not in LANGUAGE_TYPES:
            raise _ApiError(
                400,
                "InvalidParameter",
                f"Invalid language_type '{language_type}'; expected one of {sorted(LANGUAGE_TYPES)}.",
            )
        # The docs put instructions in input; the SDK sends extra kwargs as parameters: accept both.
        for key, expected in (("instructions", str), ("optimize_instructions", bool)):
            value = inp.get(key, params.get(key))
            if value is None:
                continue
            if model not in INSTRUCT_MODELS:
                raise _ApiError(
                    400, "InvalidParameter", f"Parameter '{key}' is only supported by instruct models."
                )
            if not isinstance(value, expected):
                raise _ApiError(400, "InvalidParameter", f"Parameter '{key}' must be a {expected.__name__}.")

        billed = _bill(text, self.bill_kana_hangul_double)
        duration = max(MIN_DURATION_S, self.seconds_per_char * billed)
        pcm = _synthesize(text, voice, round(duration * SAMPLE_RATE))
        file_id = uuid.uuid4().hex
        expires_at = int(time.time()) + self.url_ttl_s
        with self._lock:
            self._files[file_id] = _StoredFile(_wav_bytes(pcm), expires_at)
        signature = self._sign(file_id, expires_at)
        url = f"{self.base_url}{FILES_PREFIX}{file_id}.wav?Expires={expires_at}&Signature={signature}"
        audio_id = f"audio_{record.request_id}"
        usage = {"input_tokens": 0, "output_tokens": 0, "characters": billed}
        record.usage = usage

        if not record.stream:
            record.status, record.billed_characters = 200, billed
            self._finish(record)
            h.send_json(
                200,
                {
                    "output": {
                        "text": None,
                        "finish_reason": "stop",
                        "choices": None,
                        "audio": {"data": "", "url": url, "id": audio_id, "expires_at": expires_at},
                    },
                    "usage": usage,
                    "request_id": record.request_id,
                },
            )
            return

        with self._lock:
            cut = self._mid_stream_failures > 0
            if cut:
                self._mid_stream_failures -= 1
        h.start_sse(record.request_id)
        record.status = 200
        event_id = 0
        for chunk in _sse_chunks(pcm):
            if cut and event_id == 2:
                record.status, record.code, record.injected = 500, "InternalError", True
                self._finish(record)
                payload = {"code": "InternalError", "message": _DEFAULT_MESSAGES["InternalError"]}
                h.send_event(
                    event_id + 1, {**payload, "request_id": record.request_id}, event="error", status=500
                )
                h.end_sse()
                return
            event_id += 1
            audio = {"data": base64.b64encode(chunk.astype("<i2").tobytes()).decode("ascii"), "id": audio_id,
                     "expires_at": expires_at}  # fmt: skip
            h.send_event(
                event_id,
                {"output": {"finish_reason": "null", "audio": audio}, "request_id": record.request_id},
            )
            if self.sse_chunk_interval_s:
                time.sleep(self.sse_chunk_interval_s)
        record.billed_characters = billed
        self._finish(record)
        final_audio = {"data": "", "url": url, "id": audio_id, "expires_at": expires_at}
        h.send_event(
            event_id + 1,
            {"output": {"finish_reason": "stop", "audio": final_audio}, "usage": usage,
             "request_id": record.request_id},
        )  # fmt: skip
        h.end_sse()

    def _serve_mt(self, h: _Handler, body: dict[str, Any], record: RecordedRequest) -> None:
        model = body.get("model")
        if not isinstance(model, str) or model not in MT_MODELS:
            raise _ApiError(404, "ModelNotFound", f"Model not exist: {model}")
        inp = body.get("input")
        params = body.get("parameters") or {}
        if not isinstance(inp, dict) or not isinstance(params, dict):
            raise _ApiError(400, "InvalidParameter", "input and parameters must be JSON objects.")
        messages = inp.get("messages")
        if not isinstance(messages, list) or len(messages) != 1 or not isinstance(messages[0], dict):
            raise _ApiError(400, "InvalidParameter", "Qwen-MT takes exactly one message, with role 'user'.")
        if messages[0].get("role") != "user":
            raise _ApiError(
                400,
                "InvalidParameter",
                f"Role '{messages[0].get('role')}' is not supported: Qwen-MT takes one 'user' message only.",
            )
        content = messages[0].get("content")
        if content is None or content == "":
            raise _ApiError(
                400, "BadRequest.EmptyInput", "Required input parameter missing or empty: content."
            )
        if not isinstance(content, str):
            raise _ApiError(400, "InvalidParameter", "The message content must be a string.")
        options = params.get("translation_options")
        if not isinstance(options, dict):
            raise _ApiError(400, "InvalidParameter", "translation_options with target_lang is required.")
        target = options.get("target_lang")
        if not isinstance(target, str) or target not in MT_LANGUAGES:
            raise _ApiError(400, "InvalidParameter", f"Unsupported target_lang '{target}'.")
        source = options.get("source_lang", "auto")
        if source != "auto" and source not in MT_LANGUAGES:
            raise _ApiError(400, "InvalidParameter", f"Unsupported source_lang '{source}'.")
        terms = _pairs(options.get("terms"), "terms")
        _pairs(options.get("tm_list"), "tm_list")
        domains = options.get("domains")
        if domains is not None and not isinstance(domains, str):
            raise _ApiError(400, "InvalidParameter", "translation_options.domains must be a string.")

        translation = _fake_translate(content, target, terms)
        self._send_text_reply(h, params, record, content, translation)

    def _serve_chat(self, h: _Handler, body: dict[str, Any], record: RecordedRequest) -> None:
        inp = body.get("input")
        params = body.get("parameters") or {}
        if not isinstance(inp, dict) or not isinstance(params, dict):
            raise _ApiError(400, "InvalidParameter", "input and parameters must be JSON objects.")
        messages = inp.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _ApiError(400, "InvalidParameter", "input.messages must be a non-empty list.")
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in CHAT_ROLES:
                raise _ApiError(
                    400, "InvalidParameter", f"messages[{i}] needs a role of {sorted(CHAT_ROLES)}."
                )
            if message["role"] == "system" and i != 0:
                raise _ApiError(400, "InvalidParameter", "Only the first message may be a system message.")
            content = message.get("content")
            if content is None or content == "":
                raise _ApiError(
                    400, "BadRequest.EmptyInput", "Required input parameter missing or empty: content."
                )
            if not isinstance(content, str):
                raise _ApiError(400, "InvalidParameter", "The message content must be a string.")
        if messages[-1]["role"] != "user":
            raise _ApiError(400, "InvalidParameter", "The last message must come from the user.")
        prompt = "\n".join(str(m["content"]) for m in messages)
        self._send_text_reply(h, params, record, prompt, _fake_chat_reply(messages))

    def _send_text_reply(
        self, h: _Handler, params: dict[str, Any], record: RecordedRequest, prompt: str, reply: str
    ) -> None:
        """Answer a text-generation request (Qwen-MT or chat), as JSON or as an SSE stream."""
        usage = {"input_tokens": _approx_tokens(prompt), "output_tokens": _approx_tokens(reply)}
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        record.usage = usage
        as_message = params.get("result_format") == "message"

        def output(text: str, finish_reason: str) -> dict[str, Any]:
            if as_message:
                message = {"role": "assistant", "content": text}
                return {"choices": [{"finish_reason": finish_reason, "message": message}]}
            return {"text": text, "finish_reason": finish_reason}

        record.status = 200
        if not record.stream:
            self._finish(record)
            h.send_json(200, {"output": output(reply, "stop"), "usage": usage,
                              "request_id": record.request_id})  # fmt: skip
            return
        # The whole text so far in each event unless incremental_output is set.
        incremental = params.get("incremental_output") is True
        h.start_sse(record.request_id)
        step = 8
        pieces = [reply[i : i + step] for i in range(0, len(reply), step)] or [""]
        for i, piece in enumerate(pieces, start=1):
            last = i == len(pieces)
            if last:
                self._finish(record)
            text = piece if incremental else reply[: i * step]
            h.send_event(i, {"output": output(text, "stop" if last else "null"), "usage": usage,
                             "request_id": record.request_id})  # fmt: skip
            if self.sse_chunk_interval_s and not last:
                time.sleep(self.sse_chunk_interval_s)
        h.end_sse()

    # -- voice cloning: enrollment, listing, deletion
    def _serve_voice(self, h: _Handler, body: dict[str, Any], record: RecordedRequest) -> None:
        model = body.get("model")
        if model != ENROLLMENT_MODEL:
            raise _ApiError(
                400,
                "InvalidParameter",
                f"Model '{model}' does not manage cloned voices; use {ENROLLMENT_MODEL}.",
            )
        inp = body.get("input")
        if not isinstance(inp, dict):
            raise _ApiError(400, "InvalidParameter", "input must be a JSON object.")
        action = inp.get("action")
        if action not in ENROLLMENT_ACTIONS:
            raise _ApiError(
                400,
                "InvalidParameter",
                f"Unknown action '{action}'; expected one of {sorted(ENROLLMENT_ACTIONS)}.",
            )
        if action == "create":
            output, usage = self._enroll(inp), {"count": 1}
        elif action == "list":
            output, usage = self._list_voices(inp), None
        else:
            voice = inp.get("voice")
            with self._lock:
                removed = self._voices.pop(voice, None) if isinstance(voice, str) else None
            if removed is None:
                raise _ApiError(404, "VoiceNotFound", f"Voice '{voice}' does not exist.")  # code UNCONFIRMED
            output, usage = {"voice": voice}, None
        record.status, record.usage = 200, usage
        self._finish(record)
        payload: dict[str, Any] = {"output": output, "request_id": record.request_id}
        if usage is not None:
            payload["usage"] = usage
        h.send_json(200, payload)

    def _enroll(self, inp: dict[str, Any]) -> dict[str, Any]:
        target_model = inp.get("target_model")
        if target_model not in VC_MODELS:
            raise _ApiError(
                400, "InvalidParameter", f"target_model '{target_model}' is not one of {sorted(VC_MODELS)}."
            )
        name = inp.get("preferred_name")
        if not isinstance(name, str) or not PREFERRED_NAME_RE.fullmatch(name):
            raise _ApiError(
                400, "InvalidParameter", "preferred_name must be 1-16 characters of [A-Za-z0-9_]."
            )
        text = inp.get("text")
        if text is not None and not isinstance(text, str):
            raise _ApiError(400, "InvalidParameter", "text must be a string.")
        language = inp.get("language")
        if language is not None and language not in ENROLLMENT_LANGUAGES:
            raise _ApiError(400, "InvalidParameter", f"Unsupported language '{language}'.")
        rate, duration = _enrollment_audio(inp.get("audio"))
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        voice = f"qwen-tts-vc-{name}-voice-{stamp}-{secrets.token_hex(4)}"
        with self._lock:
            self._voices[voice] = EnrolledVoice(
                voice, str(target_model), name, time.time(), rate, duration, text, language
            )
        return {"voice": voice, "target_model": target_model}

    def _list_voices(self, inp: dict[str, Any]) -> dict[str, Any]:
        page_size, page_index = inp.get("page_size", 10), inp.get("page_index", 0)
        if not isinstance(page_size, int) or not 1 <= page_size <= 1000:
            raise _ApiError(400, "InvalidParameter", "page_size must be an integer in [1, 1000].")
        if not isinstance(page_index, int) or page_index < 0:
            raise _ApiError(400, "InvalidParameter", "page_index must be a non-negative integer.")
        with self._lock:
            voices = sorted(self._voices.values(), key=lambda v: (v.created_at, v.voice))
        page = voices[page_index * page_size : (page_index + 1) * page_size]
        return {
            "voice_list": [
                {
                    "voice": v.voice,
                    "target_model": v.target_model,
                    "gmt_create": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(v.created_at)),
                }
                for v in page
            ]
        }

    # -- GET: signed result files
    def _sign(self, file_id: str, expires_at: int) -> str:
        return hmac.new(self._secret, f"{file_id}:{expires_at}".encode(), hashlib.sha1).hexdigest()

    def _serve_get(self, h: _Handler) -> None:
        parts = urlsplit(h.path)
        kind = "download" if parts.path.startswith(FILES_PREFIX) else "other"
        record = self._new_record(h, kind, None)
        pause = self._enter(kind)
        try:
            if pause:
                time.sleep(pause)
            try:
                wav = self._download(parts.path, parts.query, kind)
                record.status = 200
                self._finish(record)
                h.send_body(200, wav, "audio/wav")
            except _ApiError as err:
                record.status, record.code, record.injected = err.status, err.code, err.injected
                headers = {"x-oss-request-id": uuid.uuid4().hex.upper()[:24]}
                if err.retry_after is not None:
                    headers["Retry-After"] = f"{err.retry_after:g}"
                xml = (
                    '<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n'
                    f"  <Code>{err.code}</Code>\n  <Message>{err.message}</Message>\n"
                    f"  <RequestId>{headers['x-oss-request-id']}</RequestId>\n  <HostId>127.0.0.1</HostId>\n"
                    "</Error>\n"
                )
                self._finish(record)
                h.send_body(err.status, xml.encode("utf-8"), "application/xml", headers)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True
        finally:
            self._finish(record)

    def _download(self, path: str, query: str, kind: str) -> bytes:
        if kind != "download" or not path.endswith(".wav"):
            raise _ApiError(404, "NoSuchKey", "The specified key does not exist.")
        self._admit(kind)
        file_id = path[len(FILES_PREFIX) : -len(".wav")]
        with self._lock:
            stored = self._files.get(file_id)
        if stored is None:
            raise _ApiError(404, "NoSuchKey", "The specified key does not exist.")
        args = parse_qs(query)
        expires, signature = args.get("Expires", [""])[0], args.get("Signature", [""])[0]
        if not expires.isdigit() or not signature:
            raise _ApiError(
                403, "AccessDenied", "You have no right to access this object because of bucket acl."
            )
        if self.expire_urls or int(expires) < time.time():
            raise _ApiError(403, "AccessDenied", "Request has expired.")
        if not hmac.compare_digest(signature, self._sign(file_id, int(expires))):
            raise _ApiError(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        return stored.wav


def _enrollment_audio(audio: Any) -> tuple[int, float]:
    """Validate input.audio ({"data": "data:audio/wav;base64,..."}): a PCM WAV, mono, >= 24 kHz, 3-60 s,
    under 10 MB. Returns (sample rate, seconds)."""
    data = audio.get("data") if isinstance(audio, dict) else None
    if not isinstance(data, str) or not data.startswith("data:"):
        raise _ApiError(400, "InvalidParameter", "audio.data must be a data URI (data:audio/wav;base64,...).")
    header, _, payload = data.partition(",")
    if not header.endswith(";base64") or not header[len("data:") :].startswith("audio/"):
        raise _ApiError(400, "InvalidParameter", "audio.data must be a base64 audio data URI.")
    try:
        raw = base64.b64decode(payload, validate=True)
    except ValueError:
        raise _ApiError(400, "InvalidParameter", "audio.data is not valid base64.") from None
    if len(raw) > ENROLLMENT_MAX_BYTES:
        raise _ApiError(400, "InvalidParameter", "The audio file exceeds 10 MB.")
    try:
        with wave.open(io.BytesIO(raw), "rb") as wav:
            rate, channels, frames = wav.getframerate(), wav.getnchannels(), wav.getnframes()
    except (wave.Error, EOFError):
        raise _ApiError(400, "InvalidParameter", "The audio could not be decoded as WAV.") from None
    duration = frames / rate if rate else 0.0
    if rate < ENROLLMENT_MIN_RATE:
        raise _ApiError(400, "InvalidParameter", f"The audio sample rate must be >= 24000 Hz, got {rate}.")
    if channels != 1:
        raise _ApiError(400, "InvalidParameter", f"The audio must be mono, got {channels} channels.")
    if not ENROLLMENT_MIN_S <= duration <= ENROLLMENT_MAX_S:
        raise _ApiError(400, "InvalidParameter", f"The audio must last 3-60 s, got {duration:.2f} s.")
    return rate, duration


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def _pairs(value: Any, name: str) -> list[tuple[str, str]]:
    """Validate translation_options.terms / tm_list: a list of {"source": str, "target": str}."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise _ApiError(400, "InvalidParameter", f"translation_options.{name} must be a list.")
    pairs = []
    for item in value:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("source"), str)
            or not isinstance(item.get("target"), str)
            or not item["source"]
        ):
            raise _ApiError(
                400, "InvalidParameter", f"Each translation_options.{name} item needs 'source' and 'target'."
            )
        pairs.append((item["source"], item["target"]))
    return pairs
