"""Cloned voices, consent first: how each engine's clone is created and reused.

Every function that creates or uses a cloned voice takes the ConsentGrant that cloning.ledger.check_consent
returned (the only way to get one), writes the audit entry of what it did (its "route" field is the engine
name, the synthesizer's `route`), and keeps what it created where revocation (cloning/revoke.py) finds it:

- qwen-tts (models.registry LOCAL): QwenLocalTTS(mode="base") with the speaker's clone prompt, computed
  once per reference and saved under clone_prompt_dir(cache_dir, speaker_id) (QwenLocalTTS names each file
  by the prompt id, a hash of the reference audio's sha256 and transcript); x-vector-only mode when there
  is no transcript;
- DashScope (models.registry API): the reference enrolled once (qwen-voice-enrollment), its voice id kept
  in VoiceIdCache (<cache_dir>/voices/<speaker_id>.json), synthesis with qwen3-tts-vc-2026-01-22.

The registry's CloneSpec.build of each engine calls one of the two functions here; a job reaches them
through cloning.session.CloneSession, never by engine name.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any

from cloning.ledger import (
    ConsentError,
    ConsentGrant,
    append_audit,
    check_speaker_id,
    ensure_still_valid,
    record_artefact,
    utc_now,
)
from cloning.reference import validate_reference
from core.errors import ConfigError
from core.files import sha256_file
from core.retry import RetryPolicy
from models.dashscope_voice_clone import (
    VC_MODEL,
    VC_RPM,
    DashScopeCloneTTS,
    VoiceEnrollment,
    VoiceIdCache,
    preferred_name_for,
)
from models.qwen_local_tts import QwenLocalTTS
from models.registry import API, LOCAL

log = logging.getLogger(__name__)

NOT_ENROLLED = "not-enrolled"  # voice id of an API clone synthesizer built without enrolling (dry runs)

# One clone created at a time per process: the per-language synthesis threads all ask for the same clone,
# and exactly one of them must create it (the others then find it in the cache).
_CLONE_LOCK = threading.Lock()


def clone_prompt_dir(cache_dir: Path, speaker_id: str) -> Path:
    """Where the speaker's clone prompts live (the local engine's clone; revocation deletes the folder)."""
    return Path(cache_dir) / "voice_prompts" / "clones" / check_speaker_id(speaker_id)


def _require_grant(grant: ConsentGrant, engine: str) -> None:
    """A grant from check_consent whose record still holds now (re-read from the ledger)."""
    if not isinstance(grant, ConsentGrant):
        raise ConsentError(f"cloning a voice with the {engine} engine needs a consent check (check_consent)")
    ensure_still_valid(grant)


def _reference_text(text: str | None) -> str | None:
    cleaned = " ".join((text or "").split())
    return cleaned or None


# -- qwen-tts on this machine ----------------------------------------------------------------------------


class ClonedQwenLocalTTS(QwenLocalTTS):
    """QwenLocalTTS in base mode whose identity also names the cloned speaker and the reference's hash
    (identity()["clone"], as DashScopeCloneTTS has): clip cache keys, clip metadata and reports can tell a
    cloned voice, and whose it is, whatever the engine."""

    def __init__(self, *, speaker_id: str, **kwargs: Any) -> None:
        super().__init__(mode="base", **kwargs)
        self.speaker_id = speaker_id

    def identity(self, voice: str | None = None) -> dict[str, Any]:
        pending = self._pending_ref
        reference = pending[2] if pending is not None else getattr(self.voice_prompt, "audio_sha256", "")
        return {
            **super().identity(voice),
            "clone": {"speaker_id": self.speaker_id, "reference_sha256": reference},
        }


def local_clone_synthesizer(
    grant: ConsentGrant,
    reference_wav: Path,
    reference_text: str | None,
    model: str | None,
    cache_dir: Path,
    *,
    size: str = "1.7B",
    create: bool = True,
    route: str = LOCAL,
    **options: Any,
) -> ClonedQwenLocalTTS:
    """QwenLocalTTS(mode="base") speaking with the speaker's cloned voice.

    With create=True the clone prompt is made ready now (read from <cache_dir>/voice_prompts/clones/
    <speaker_id>/ or computed once, which loads the model) and a "clone_created" audit entry is written
    when it had to be computed. create=False loads nothing (preflight, cost estimates): the prompt id is
    known from the reference's hash, and the prompt is computed at the first synthesis call.
    `options` go to QwenLocalTTS (device, dtype, generation, guard, seed...)."""
    _require_grant(grant, route)
    text = _reference_text(reference_text)
    prompt_dir = clone_prompt_dir(cache_dir, grant.speaker_id)
    tts = ClonedQwenLocalTTS(
        speaker_id=grant.speaker_id,
        model=model,
        size=size,
        ref_audio=reference_wav,
        ref_text=text,
        prompt_cache_dir=prompt_dir,
        route=route,
        **options,
    )
    if not create:
        return tts
    with _CLONE_LOCK:
        prompt_id = str(tts.identity()["voice_prompt"])
        before = _prompt_files(prompt_dir, prompt_id)
        prompt = tts.clone_prompt(reference_wav, text)
        tts.voice_prompt = prompt
        if _prompt_files(prompt_dir, prompt_id) != before:  # written now: it was computed, not read
            record_artefact(
                grant.ledger, "artefact", grant.speaker_id, kind="clone_prompt", prompt_id=prompt.id,
                path=str(prompt_dir.resolve()), cache_dir=str(Path(cache_dir).resolve()),
            )  # fmt: skip
            append_audit(
                grant.ledger,
                {
                    "event": "clone_created",
                    "route": route,
                    "speaker_id": grant.speaker_id,
                    "consent_record_hash": grant.record_hash,
                    "reference_sha256": prompt.audio_sha256,
                    "prompt_id": prompt.id,
                    "model": tts.model_key,
                    "document_status": grant.document_status,
                    "status": "x_vector_only" if prompt.x_vector_only else "in_context",
                },
            )
    return tts


PROMPT_FILE_RE = re.compile(r"qwen-clone-(?P<model>[0-9a-f]{12})-(?P<prompt>[0-9a-f]{16})\.pt")


def prompt_id_of(path: Path) -> str | None:
    """The clone prompt id of a prompt file QwenLocalTTS wrote (qwen-clone-<model hash 12>-<prompt id 16>.pt,
    see QwenLocalTTS._prompt_cache_file and clone_prompt_id), None for any other file."""
    match = PROMPT_FILE_RE.fullmatch(Path(path).name)
    return match["prompt"] if match else None


def _prompt_files(prompt_dir: Path, prompt_id: str) -> dict[str, tuple[int, int]]:
    if not prompt_dir.is_dir():
        return {}
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in prompt_dir.glob(f"*-{prompt_id}.pt")}


# -- DashScope -------------------------------------------------------------------------------------------


def api_clone_synthesizer(
    grant: ConsentGrant,
    reference_wav: Path,
    reference_text: str | None,
    cache_dir: Path,
    *,
    region: str = "intl",
    target_model: str = VC_MODEL,
    reference_language: str | None = None,
    stream: bool = False,
    rpm: int = VC_RPM,
    concurrency: int = 8,
    retry: RetryPolicy | None = None,
    create: bool = True,
    require_key: bool = True,
    enrollment: VoiceEnrollment | None = None,
    route: str = API,
) -> DashScopeCloneTTS:
    """DashScopeCloneTTS with the speaker's enrolled voice: taken from <cache_dir>/voices/<speaker_id>.json
    when this reference was enrolled for this model and region, else enrolled now (once: threads and
    processes wait on the cache's lock) and audited as "clone_created".

    create=False never enrolls (dry runs, cost estimates): without a cached voice the synthesizer carries
    the placeholder voice id NOT_ENROLLED, good for identity() and nothing else."""
    _require_grant(grant, route)
    reference_wav = Path(reference_wav)
    if not reference_wav.is_file():
        raise ConfigError(f"reference recording {str(reference_wav)!r} does not exist")
    reference_sha256 = sha256_file(reference_wav)
    cache = VoiceIdCache(cache_dir, grant.speaker_id)

    def synthesizer(voice: str) -> DashScopeCloneTTS:
        return DashScopeCloneTTS(
            voice=voice,
            speaker_id=grant.speaker_id,
            reference_sha256=reference_sha256,
            model=target_model,
            region=region,
            stream=stream,
            rpm=rpm,
            concurrency=concurrency,
            retry=retry,
            require_key=require_key and create,
            route=route,
            journal=cache_dir / "journal",
        )

    if not create:
        entry = cache.find(reference_sha256, target_model, region)
        return synthesizer(str(entry["voice"]) if entry else NOT_ENROLLED)
    with _CLONE_LOCK, cache.locked():
        entry = cache.find(reference_sha256, target_model, region)
        if entry is None:
            validate_reference(reference_wav)  # the service's limits, checked before the upload
            client = enrollment or VoiceEnrollment(region=region, retry=retry)
            name = preferred_name_for(grant.speaker_id)
            # journalled before the call: a crash between enrollment and keeping the id cannot hide the
            # voice from revocation (it lists the account's voices by this name)
            record_artefact(
                grant.ledger, "enroll_intent", grant.speaker_id, preferred_name=name, region=region,
                target_model=target_model, cache_dir=str(Path(cache_dir).resolve()),
            )  # fmt: skip
            voice = client.create(
                reference_wav,
                preferred_name=name,
                text=_reference_text(reference_text),
                language=reference_language,
                target_model=target_model,
            )
            entry = {
                "voice": voice,
                "target_model": target_model,
                "region": region,
                "reference_sha256": reference_sha256,
                "consent_record_hash": grant.record_hash,
                "preferred_name": name,
                "created_at": utc_now().isoformat(),
            }
            cache.add(entry)
            record_artefact(
                grant.ledger, "artefact", grant.speaker_id, kind="enrolled_voice", voice=voice,
                region=region, cache_dir=str(Path(cache_dir).resolve()),
            )  # fmt: skip
            append_audit(
                grant.ledger,
                {
                    "event": "clone_created",
                    "route": route,
                    "speaker_id": grant.speaker_id,
                    "consent_record_hash": grant.record_hash,
                    "reference_sha256": reference_sha256,
                    "voice_id": voice,
                    "target_model": target_model,
                    "region": region,
                    "document_status": grant.document_status,
                },
            )
            log.info("voice of speaker %s enrolled for %s", grant.speaker_id, target_model)
    return synthesizer(str(entry["voice"]))
