"""Voice cloning through DashScope: enrollment (qwen-voice-enrollment) and synthesis with the enrolled voice
(qwen3-tts-vc-2026-01-22). Shared docs qwen-reference.md, section 4.

- VoiceEnrollment: create / list / delete on ``POST {base}/services/audio/tts/customization``, through the
  dashscope SDK's generic service call (the same ``BaseApi.call`` the SDK's own VoiceEnrollmentService uses;
  that class speaks the CosyVoice actions, not qwen-voice-enrollment's create/list/delete). Base URL from
  Endpoint.for_region (DASHSCOPE_HTTP_BASE_URL overrides it); the key from the environment only.
  list and delete are retried on transient failures (core/retry.py); create is retried on transient
  HTTP answers (429/5xx: nothing was created) but never after a transport failure, which may have
  created a voice whose id we never saw.
- VoiceIdCache: <cache_dir>/voices/<speaker_id>.json, so a speaker's reference is enrolled once.
- DashScopeCloneTTS: the SpeechSynthesizer of the API route with an enrolled voice.

Nothing here checks consent: cloning/voice.py does, before it calls any of this.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import functools
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.errors import ConfigError, InputError, UpstreamError
from core.journal import journal_at
from core.retry import TRANSPORT_ERRORS, RetryPolicy, call_with_retries
from models.dashscope_common import Endpoint, api_key_from_env, upstream_error
from models.dashscope_tts import DashScopeTTS
from models.pacing import global_limit_name, shared_limiter
from models.registry import API

log = logging.getLogger(__name__)

ENROLLMENT_MODEL = "qwen-voice-enrollment"
VC_MODEL = "qwen3-tts-vc-2026-01-22"
VC_MODELS = frozenset({VC_MODEL})  # synthesis models an enrolled voice can target
PREFERRED_NAME_RE = re.compile(r"[A-Za-z0-9_]{1,16}")
MAX_ENROLLMENT_BYTES = 10 * 1024 * 1024  # the service's limit on the audio file
VC_RPM = 180  # qwen3-tts-vc: 180 requests per minute


def preferred_name_for(speaker_id: str) -> str:
    """A preferred_name (<= 16 of [A-Za-z0-9_]) from a speaker id, so enrolled voices can be recognised."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", speaker_id)[:16].strip("_")
    return name or "speaker"


def audio_data_uri(wav: Path) -> str:
    data = Path(wav).read_bytes()
    if len(data) > MAX_ENROLLMENT_BYTES:
        raise InputError(f"reference recording {Path(wav).name} is over 10 MB; use 10-20 s of speech")
    return "data:audio/wav;base64," + base64.b64encode(data).decode("ascii")


class VoiceEnrollment:
    """Client for qwen-voice-enrollment (create, list, delete)."""

    def __init__(self, *, region: str = "intl", retry: RetryPolicy | None = None) -> None:
        self.region = region
        self.endpoint = Endpoint.for_region(region)
        self.retry = retry or RetryPolicy()
        self._api_key = api_key_from_env()  # fails now, with the one-line hint, when the key is missing

    def _call(self, what: str, fields: dict[str, Any]) -> Any:
        from dashscope.client.base_api import BaseApi  # lazy: keeps --help fast

        response = BaseApi.call(
            model=ENROLLMENT_MODEL,
            input=fields,
            task_group="audio",
            task="tts",
            function="customization",
            api_key=self._api_key,
            base_address=self.endpoint.http_base_url,
        )
        if response.status_code != 200:
            raise upstream_error(what, response)
        return response.output or {}

    def create(
        self,
        audio_wav: Path,
        *,
        preferred_name: str,
        text: str | None = None,
        language: str | None = None,
        target_model: str = VC_MODEL,
    ) -> str:
        """Enroll a voice from a WAV; returns the voice id. The transcript (text) is optional."""
        if target_model not in VC_MODELS:
            raise ConfigError(f"unknown voice-cloning model {target_model!r}; known: {', '.join(VC_MODELS)}")
        if not PREFERRED_NAME_RE.fullmatch(preferred_name):
            raise ConfigError(
                f"preferred voice name {preferred_name!r}: use 1-16 characters of A-Z a-z 0-9 _"
            )
        fields: dict[str, Any] = {
            "action": "create",
            "target_model": target_model,
            "preferred_name": preferred_name,
            "audio": {"data": audio_data_uri(audio_wav)},
        }
        if text:
            fields["text"] = " ".join(text.split())
        if language:
            fields["language"] = language

        def once() -> Any:
            try:
                return self._call("voice enrollment", fields)
            except TRANSPORT_ERRORS as exc:
                raise UpstreamError(
                    f"voice enrollment failed: connection lost ({type(exc).__name__}); a voice may have been "
                    "created anyway: see `python -m cloning.cli voices --region ...`",
                    code=type(exc).__name__,
                ) from None

        output = call_with_retries(once, self.retry)
        voice = output.get("voice") if isinstance(output, dict) else None
        if not isinstance(voice, str) or not voice:
            raise UpstreamError("voice enrollment returned no voice id", code="NoVoice")
        returned_model = output.get("target_model") or target_model
        if returned_model != target_model:
            raise UpstreamError(
                f"voice enrollment returned a voice for {returned_model}, not {target_model}", code="BadVoice"
            )
        return voice

    def list(self, page_size: int = 10, page_index: int = 0) -> list[dict[str, Any]]:
        """One page of the account's enrolled voices (dicts with at least "voice")."""
        fields = {"action": "list", "page_size": int(page_size), "page_index": int(page_index)}
        output = call_with_retries(functools.partial(self._call, "voice listing", fields), self.retry)
        if not isinstance(output, dict):
            return []
        voices = output.get("voice_list") or output.get("voices") or []
        return [v for v in voices if isinstance(v, dict)]

    def delete(self, voice: str) -> bool:
        """Delete an enrolled voice: True when deleted, False when the service does not know it (already
        deleted). Other failures raise UpstreamError."""
        if not voice:
            raise ConfigError("no voice id to delete")
        fields = {"action": "delete", "voice": voice}
        try:
            call_with_retries(functools.partial(self._call, "voice deletion", fields), self.retry)
        except UpstreamError as exc:
            if exc.status == 404:
                return False
            raise
        return True


class DashScopeCloneTTS(DashScopeTTS):
    """DashScopeTTS with an enrolled (cloned) voice on a voice-cloning model.

    The parent's constructor checks the voice against the system-voice catalogue, which an enrolled voice
    id is not in; this constructor sets the same attributes itself and inherits everything else (request,
    streaming, download, retries, pacing)."""

    def __init__(
        self,
        *,
        voice: str,
        speaker_id: str,
        reference_sha256: str,
        model: str = VC_MODEL,
        region: str = "intl",
        stream: bool = False,
        rpm: int = VC_RPM,
        concurrency: int = 8,
        retry: RetryPolicy | None = None,
        require_key: bool = True,
        route: str = API,
        journal: Path | None = None,
    ) -> None:
        self.route = route
        self.journal = journal_at(journal) if journal is not None else None  # see DashScopeTTS
        if model not in VC_MODELS:
            raise ConfigError(f"{model!r} is not a voice-cloning model; use {VC_MODEL}")
        if not voice or not voice.strip():
            raise ConfigError("a cloned voice needs its enrolled voice id")
        self.model = model
        self.voice = voice.strip()
        self.instructions = None
        self.region = region
        self.stream = stream
        self.endpoint = Endpoint.for_region(region)
        self.retry = retry or RetryPolicy()
        # Synthesis with a cloned voice is TTS traffic (one request per segment): the TTS global rate limit
        # paces it too. Sharing it with the system-voice model is conservative (DashScope counts RPM per
        # model). Enrollment takes no slot: one request per speaker, cached on disk.
        self.limiter = shared_limiter(
            self.endpoint.http_base_url, model, rpm, concurrency, global_limit_name("tts")
        )
        self._api_key = api_key_from_env() if require_key else None
        self.speaker_id = speaker_id
        self.reference_sha256 = reference_sha256

    def voice_name(self, voice: str | None) -> str:
        """A cloned voice speaks only as itself: a request names it, or no voice at all."""
        if voice not in (None, self.voice):
            raise ConfigError(f"a cloned voice cannot speak as {voice!r}")
        return self.voice

    def identity(self, voice: str | None = None) -> dict[str, Any]:
        return {
            **super().identity(voice),
            "clone": {"speaker_id": self.speaker_id, "reference_sha256": self.reference_sha256},
        }


class VoiceIdCache:
    """The enrolled voices of one speaker: <cache_dir>/voices/<speaker_id>.json.

    {"speaker_id": ..., "voices": [{"voice", "target_model", "region", "reference_sha256",
    "consent_record_hash", "preferred_name", "created_at"}, ...]}. Readers and writers hold an flock on
    <speaker_id>.json.lock (locked()), so two processes do not enroll the same reference twice."""

    def __init__(self, cache_dir: Path, speaker_id: str) -> None:
        self.dir = Path(cache_dir) / "voices"
        self.speaker_id = speaker_id
        self.path = self.dir / f"{speaker_id}.json"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / f"{self.speaker_id}.json.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def entries(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise InputError(f"voice cache {self.path} is unreadable ({exc.__class__.__name__})") from None
        voices = data.get("voices") if isinstance(data, dict) else None
        return [v for v in voices or [] if isinstance(v, dict) and isinstance(v.get("voice"), str)]

    def find(self, reference_sha256: str, target_model: str, region: str) -> dict[str, Any] | None:
        for entry in self.entries():
            if (entry.get("reference_sha256"), entry.get("target_model"), entry.get("region")) == (
                reference_sha256,
                target_model,
                region,
            ):
                return entry
        return None

    def _write(self, voices: list[dict[str, Any]]) -> None:
        if not voices:
            self.path.unlink(missing_ok=True)
            return
        data = json.dumps({"speaker_id": self.speaker_id, "voices": voices}, ensure_ascii=False, indent=2)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(data + "\n", encoding="utf-8")
        os.replace(tmp, self.path)  # atomic: readers see the old list or the new one

    def add(self, entry: dict[str, Any]) -> None:
        voices = [v for v in self.entries() if v.get("voice") != entry["voice"]]
        self._write([*voices, entry])

    def remove(self, voice: str) -> None:
        self._write([v for v in self.entries() if v.get("voice") != voice])
