"""Qwen TTS through DashScope (qwen3-tts-flash, qwen3-tts-instruct-flash) via the dashscope SDK.

Audio comes either from the SSE stream (base64 PCM, no URL at all) or from the 24-hour result URL,
which is downloaded immediately. Each request is paced by the shared limiter and retried only when the
failure is transient (see dashscope_common.is_transient).
"""

from __future__ import annotations

import base64
import functools
import io
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests
import soundfile as sf

from core.errors import ConfigError, UpstreamError
from core.files import content_key
from core.journal import AnswerJournal, journal_at
from core.languages import Language
from core.retry import CallStats, RetryPolicy, call_with_retries
from models.base import SynthesizedClip
from models.dashscope_common import Endpoint, api_key_from_env, upstream_error
from models.pacing import global_limit_name, shared_limiter
from models.registry import API
from models.voices import INSTRUCT_MODELS, resolve_voice
from text.split import split_text

log = logging.getLogger(__name__)

SAMPLE_RATE = 24_000  # Hz: qwen3-tts-flash returns 24 kHz mono (WAV by URL, PCM s16le when streaming)
MAX_REQUEST_CHARS = 600  # per-request `input.text` limit of the flash models
DOWNLOAD_TIMEOUT_S = 60.0
DEFAULT_TTS_MODEL = "qwen3-tts-flash-2025-11-27"  # snapshot-pinned; the bare alias may move
URL_MARGIN_S = 60  # a journaled result URL this close to `expires_at` is not worth trying


class DashScopeTTS:
    """SpeechSynthesizer for DashScope Qwen TTS: one catalogue voice per request (`voice=None` speaks
    with the default voice given here)."""

    journal: AnswerJournal | None = None  # subclasses that set their own attributes start without one

    def __init__(
        self,
        *,
        model: str = DEFAULT_TTS_MODEL,
        voice: str = "Cherry",
        region: str = "intl",
        stream: bool = False,
        instructions: str | None = None,
        rpm: int = 180,
        concurrency: int = 8,
        retry: RetryPolicy | None = None,
        require_key: bool = True,
        route: str = API,
        journal: Path | None = None,
    ) -> None:
        """`journal`: the folder where every answer is written down before it is used (core/journal.py),
        so a job killed mid-flight and resumed pays for no answer twice; None: no journal."""
        self.route = route
        self.journal = journal_at(journal) if journal is not None else None
        self.model = model
        self.voice = resolve_voice(voice, model).name
        if instructions and model not in INSTRUCT_MODELS:
            raise ConfigError(
                f"--instructions needs an instruct model (e.g. qwen3-tts-instruct-flash), not {model}"
            )
        self.instructions = instructions
        self.region = region
        self.stream = stream
        self.endpoint = Endpoint.for_region(region)
        self.retry = retry or RetryPolicy()
        self.limiter = shared_limiter(
            self.endpoint.http_base_url, model, rpm, concurrency, global_limit_name("tts")
        )
        # checked at construction so a job fails before work; dry runs (cost estimates) need no key
        self._api_key = api_key_from_env() if require_key else None

    def voice_name(self, voice: str | None) -> str:
        """The catalogue name of a request's voice (None: the default voice)."""
        return self.voice if voice is None else resolve_voice(voice, self.model).name

    def identity(self, voice: str | None = None) -> dict[str, Any]:
        return {
            "route": self.route,
            "model": self.model,
            "voice": self.voice_name(voice),
            "instructions": self.instructions or "",
            "sample_rate": SAMPLE_RATE,
        }

    def synthesize(self, text: str, language: Language, voice: str | None = None) -> SynthesizedClip:
        """One line -> one clip. Lines over the request limit are split at sentence/clause boundaries and
        the pieces concatenated (the service returns each piece with its own short edge silences)."""
        voice_name = self.voice_name(voice)
        pieces = split_text(text, MAX_REQUEST_CHARS)
        if not pieces:
            raise ConfigError("empty text cannot be synthesised")
        stats = CallStats()
        audio_parts: list[np.ndarray] = []
        billed = 0
        for piece in pieces:
            audio, characters = call_with_retries(
                functools.partial(self._request, piece, language, voice_name), self.retry, stats=stats
            )
            audio_parts.append(audio)
            billed += characters
        audio = np.concatenate(audio_parts) if len(audio_parts) > 1 else audio_parts[0]
        if self.journal is not None:  # handed on now (the stage caches it at once): no longer the journal's
            self.journal.retire(*(self.answer_key(piece, language, voice_name) for piece in pieces))
        return SynthesizedClip(
            audio=audio,
            sample_rate=SAMPLE_RATE,
            billed_characters=billed,
            attempts=stats.attempts,
            requests=len(pieces),
        )

    # -- one request -------------------------------------------------------------------------------

    def _call_kwargs(self, text: str, language: Language, voice: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "api_key": self._api_key or api_key_from_env(),
            "text": text,
            "voice": voice,
            "language_type": language.name,  # instruct models reject lowercase names
            "stream": self.stream,
            "base_address": self.endpoint.http_base_url,
        }
        if self.instructions:
            kwargs["instructions"] = self.instructions
        return kwargs

    def answer_key(self, text: str, language: Language, voice: str) -> str:
        """The journal's key of one request: everything that decides the answer (never the key itself)."""
        return content_key(
            "tts-answer", self.endpoint.http_base_url, self.model, voice, language.name, text,
            self.instructions or "", self.stream,
        )  # fmt: skip

    def _request(self, text: str, language: Language, voice: str) -> tuple[np.ndarray, int]:
        from dashscope import MultiModalConversation  # lazy: keeps --help fast

        key = self.answer_key(text, language, voice)
        recovered = self._recover(key)
        if recovered is not None:
            return recovered
        with self.limiter.slot():
            response = MultiModalConversation.call(**self._call_kwargs(text, language, voice))
            if self.stream:
                return self._read_stream(response, key)
            return self._read_single(response, key)

    def _recover(self, key: str) -> tuple[np.ndarray, int] | None:
        """An answer to this very request that an earlier (killed) run was given and paid for: its
        streamed audio, or its result URL downloaded now. An expired URL cannot be downloaded: then the
        request is made again (and paid again), and the log says so."""
        entry = self.journal.lookup(key) if self.journal is not None else None
        if entry is None or self.journal is None:
            return None
        characters = int(entry.get("characters", 0))
        request_id = entry.get("request_id", "")
        if entry["kind"] == "audio":
            pcm = self.journal.audio(entry)
            if pcm:
                log.info("tts answer recovered from the journal request=%s (not paid again)", request_id)
                return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0, characters
            return None
        if entry["kind"] != "url":
            return None
        if float(entry.get("expires_at") or 0) > time.time() + URL_MARGIN_S:
            try:
                audio = self._download(str(entry["url"]))
            except UpstreamError as exc:
                if exc.code == "BadAudio":  # what it holds is no clip: ask again
                    self.journal.retire(key)
                    return None
                if exc.code != "ResultUrlExpired":
                    raise
            else:
                log.info("tts answer recovered from the journal request=%s (not paid again)", request_id)
                return audio, characters
        log.warning(
            "tts: the result URL of an answer paid before a crash has expired (request %s): requesting the "
            "line again",
            request_id,
        )
        self.journal.retire(key)
        return None

    def _read_single(self, response: Any, key: str) -> tuple[np.ndarray, int]:
        if response.status_code != 200:
            raise upstream_error("speech synthesis", response)
        url = response.output.audio.url
        if not url:
            raise UpstreamError("speech synthesis returned no audio URL", code="NoAudio")
        characters = int(_usage_characters(response))
        if self.journal is not None:  # written down before the download: a kill now loses nothing paid
            self.journal.record(
                key, "url", url=url, expires_at=response.output.audio.get("expires_at"),
                request_id=response.request_id, characters=characters,
            )  # fmt: skip
        try:
            audio = self._download(url)
        except UpstreamError as exc:
            if exc.code == "BadAudio" and self.journal is not None:
                self.journal.retire(key)  # not a usable answer: the retry asks again, never reuses it
            raise
        return audio, characters

    def _read_stream(self, responses: Any, key: str) -> tuple[np.ndarray, int]:
        chunks: list[bytes] = []
        characters = 0
        request_id = ""
        finished = False
        for part in responses:
            if part.status_code != 200:
                raise upstream_error("speech synthesis (stream)", part)
            audio = part.output.audio if part.output else None
            if audio is not None and audio.data:
                chunks.append(base64.b64decode(audio.data))
            if part.output and part.output.finish_reason == "stop":
                finished = True
                characters = int(_usage_characters(part))
                request_id = part.request_id or ""
        if not finished:
            raise UpstreamError(
                "speech synthesis stream ended before completion", code="StreamTruncated", transient=True
            )
        data = b"".join(chunks)
        if not data:
            raise UpstreamError("speech synthesis stream carried no audio", code="NoAudio", transient=True)
        if self.journal is not None:  # the whole stream has arrived: written down before it is used
            self.journal.record_audio(key, data, request_id=request_id, characters=characters)
        pcm = np.frombuffer(data, dtype="<i2")
        return pcm.astype(np.float32) / 32768.0, characters

    def _download(self, url: str) -> np.ndarray:
        """Fetch the result WAV now (it expires after 24 h). Transport errors and 5xx are retried here;
        an expired or missing URL (403/404) is reported as transient so the caller re-requests once more
        under its own retry budget. The URL is never logged: it carries a signature."""

        def fetch() -> bytes:
            resp = requests.get(url, timeout=DOWNLOAD_TIMEOUT_S)
            if resp.status_code in (403, 404):
                raise UpstreamError(
                    f"audio result URL refused the download (HTTP {resp.status_code}, expired?)",
                    code="ResultUrlExpired",
                    status=resp.status_code,
                    transient=True,
                )
            if resp.status_code != 200:
                raise UpstreamError(
                    f"audio download failed: HTTP {resp.status_code}",
                    code="DownloadFailed",
                    status=resp.status_code,
                    transient=resp.status_code >= 500 or resp.status_code in (408, 429),
                )
            return resp.content

        data = call_with_retries(fetch, RetryPolicy(max_attempts=3, base_delay_s=self.retry.base_delay_s))
        return decode_verified_wav(data, SAMPLE_RATE)


def decode_verified_wav(data: bytes, expected_rate: int) -> np.ndarray:
    """Decode a WAV and check it is what a clip must be: decodable, non-empty, mono at the expected rate."""
    try:
        audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise UpstreamError(
            f"downloaded audio is not a readable WAV ({exc.__class__.__name__})", code="BadAudio"
        ) from None
    if rate != expected_rate:
        raise UpstreamError(f"downloaded audio is {rate} Hz, expected {expected_rate}", code="BadAudio")
    if audio.shape[0] == 0:
        raise UpstreamError("downloaded audio is empty", code="BadAudio", transient=True)
    return audio.mean(axis=1)


def _usage_characters(response: Any) -> int:
    usage = getattr(response, "usage", None)
    if not usage:
        return 0
    try:
        return int(usage["characters"])
    except (KeyError, TypeError):
        return int(getattr(usage, "characters", 0) or 0)
