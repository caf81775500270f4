"""Cloned voices, consent first: the two cloning routes and revocation.

Every function that creates or uses a cloned voice takes the ConsentGrant that cloning.ledger.check_consent
returned (the only way to get one), writes the audit entry of what it did, and keeps what it created where
revocation finds it:

- local route: QwenLocalTTS(mode="base") with the speaker's clone prompt, computed once per reference and
  saved under <cache_dir>/voice_prompts/clones/<speaker_id>/ (QwenLocalTTS names each file by the prompt
  id, a hash of the reference audio's sha256 and transcript); x-vector-only mode when there is no
  transcript;
- API route: the reference enrolled once (qwen-voice-enrollment), its voice id kept in
  <cache_dir>/voices/<speaker_id>.json, synthesis with qwen3-tts-vc-2026-01-22;
- revoke_speaker: record revoked first, then the local prompts deleted, the enrolled voices deleted on the
  API (those that cannot be deleted now are reported and kept in the cache for the next try), and clip
  cache entries made with the voice purged.
"""

from __future__ import annotations

import logging
import shutil
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cloning.ledger import (
    ConsentError,
    ConsentGrant,
    ConsentRecord,
    append_audit,
    check_consent,
    check_speaker_id,
    ensure_still_valid,
    revoke_record,
    utc_now,
)
from cloning.reference import load_reference, validate_reference
from core.errors import ConfigError, DubError, InputError, UpstreamError
from core.files import read_json, sha256_file
from core.retry import RetryPolicy
from models.base import SpeechSynthesizer
from models.dashscope_voice_clone import (
    VC_MODEL,
    VC_RPM,
    DashScopeCloneTTS,
    VoiceEnrollment,
    VoiceIdCache,
    preferred_name_for,
)
from models.qwen_local_tts import QwenLocalTTS

log = logging.getLogger(__name__)

NOT_ENROLLED = "not-enrolled"  # voice id of an API clone synthesizer built without enrolling (dry runs)
CLIP_META_SPEAKER = "clone_speaker"  # clip cache metadata key naming the cloned speaker (see purge_clips)

# One clone created at a time per process: the per-language synthesis threads all ask for the same clone,
# and exactly one of them must create it (the others then find it in the cache).
_CLONE_LOCK = threading.Lock()


def clone_prompt_dir(cache_dir: Path, speaker_id: str) -> Path:
    return Path(cache_dir) / "voice_prompts" / "clones" / check_speaker_id(speaker_id)


def _require_grant(grant: ConsentGrant, route: str) -> None:
    """A grant from check_consent whose record still holds now (re-read from the ledger)."""
    if not isinstance(grant, ConsentGrant):
        raise ConsentError(f"cloning a voice on the {route} route needs a consent check (check_consent)")
    ensure_still_valid(grant)


def _reference_text(text: str | None) -> str | None:
    cleaned = " ".join((text or "").split())
    return cleaned or None


# -- local route -----------------------------------------------------------------------------------------


class ClonedQwenLocalTTS(QwenLocalTTS):
    """QwenLocalTTS in base mode whose identity also names the cloned speaker and the reference's hash
    (identity()["clone"], as DashScopeCloneTTS has): clip cache keys, clip metadata and reports can tell a
    cloned voice, and whose it is, on either route."""

    def __init__(self, *, speaker_id: str, **kwargs: Any) -> None:
        super().__init__(mode="base", **kwargs)
        self.speaker_id = speaker_id

    def identity(self, voice: str | None = None) -> dict[str, Any]:
        pending = self._pending_ref
        reference = pending[2] if pending is not None else getattr(self.voice_prompt, "audio_sha256", "")
        return {**super().identity(voice), "clone": {"speaker_id": self.speaker_id, "reference_sha256": reference}}


def local_clone_synthesizer(
    grant: ConsentGrant,
    reference_wav: Path,
    reference_text: str | None,
    model: str | None,
    cache_dir: Path,
    *,
    size: str = "1.7B",
    create: bool = True,
    **options: Any,
) -> ClonedQwenLocalTTS:
    """QwenLocalTTS(mode="base") speaking with the speaker's cloned voice.

    With create=True the clone prompt is made ready now (read from <cache_dir>/voice_prompts/clones/
    <speaker_id>/ or computed once, which loads the model) and a "clone_created" audit entry is written
    when it had to be computed. create=False loads nothing (preflight, cost estimates): the prompt id is
    known from the reference's hash, and the prompt is computed at the first synthesis call.
    `options` go to QwenLocalTTS (device, dtype, generation, guard, seed...)."""
    _require_grant(grant, "local")
    text = _reference_text(reference_text)
    prompt_dir = clone_prompt_dir(cache_dir, grant.speaker_id)
    tts = ClonedQwenLocalTTS(
        speaker_id=grant.speaker_id,
        model=model,
        size=size,
        ref_audio=reference_wav,
        ref_text=text,
        prompt_cache_dir=prompt_dir,
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
            append_audit(
                grant.ledger,
                {
                    "event": "clone_created",
                    "route": "local",
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


def _prompt_files(prompt_dir: Path, prompt_id: str) -> dict[str, tuple[int, int]]:
    if not prompt_dir.is_dir():
        return {}
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in prompt_dir.glob(f"*-{prompt_id}.pt")}


# -- API route -------------------------------------------------------------------------------------------


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
) -> DashScopeCloneTTS:
    """DashScopeCloneTTS with the speaker's enrolled voice: taken from <cache_dir>/voices/<speaker_id>.json
    when this reference was enrolled for this model and region, else enrolled now (once: threads and
    processes wait on the cache's lock) and audited as "clone_created".

    create=False never enrolls (dry runs, cost estimates): without a cached voice the synthesizer carries
    the placeholder voice id NOT_ENROLLED, good for identity() and nothing else."""
    _require_grant(grant, "api")
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
            append_audit(
                grant.ledger,
                {
                    "event": "clone_created",
                    "route": "api",
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


def clone_synthesizer(
    grant: ConsentGrant,
    route: str,
    reference_wav: Path,
    reference_text: str | None,
    cache_dir: Path,
    *,
    local_model: str | None = None,
    size: str = "1.7B",
    region: str = "intl",
    reference_language: str | None = None,
    stream: bool = False,
    rpm: int = VC_RPM,
    concurrency: int = 8,
    retry: RetryPolicy | None = None,
    create: bool = True,
    require_key: bool = True,
) -> SpeechSynthesizer:
    """The cloned-voice synthesizer of a route ("local" or "api"); see the two functions above."""
    if route == "local":
        tts: SpeechSynthesizer = local_clone_synthesizer(
            grant, reference_wav, reference_text, local_model, cache_dir, size=size, create=create
        )
        return tts
    if route == "api":
        return api_clone_synthesizer(
            grant, reference_wav, reference_text, cache_dir, region=region,
            reference_language=reference_language, stream=stream, rpm=rpm, concurrency=concurrency,
            retry=retry, create=create, require_key=require_key,
        )  # fmt: skip
    raise ConfigError(f"unknown TTS route {route!r}")


def grant_for_config(config: Any) -> ConsentGrant:
    """check_consent for a job config with the fields clone (speaker id), consent_dir, clone_use and langs."""
    if not getattr(config, "consent_dir", None) or not getattr(config, "clone_use", None):
        raise ConsentError("--clone needs --consent-dir DIR and --clone-use TEXT")
    return check_consent(Path(config.consent_dir), config.clone, config.langs, config.clone_use)


def synthesizer_for_config(
    config: Any, reference_wav: Path, *, create: bool = True, require_key: bool = True
) -> SpeechSynthesizer:
    """The cloned voice of a job, for tasks/synthesize.make_synthesizer: consent checked again now (a
    revocation since the job started stops it here), the reference and its transcript read back
    (load_reference), the voice of the job's route built (created once; later calls reuse it).
    `config` needs, besides the clone fields above: tts, cache_dir, tts_local_model, tts_size, region,
    stream, concurrency, retry_base_delay_s (DubConfig has them) and optionally source_lang."""
    grant = grant_for_config(config)
    wav, text = load_reference(reference_wav)
    return clone_synthesizer(
        grant, config.tts, wav, text, Path(config.cache_dir), local_model=config.tts_local_model,
        size=config.tts_size, region=config.region, reference_language=getattr(config, "source_lang", None),
        stream=config.stream, concurrency=config.concurrency,
        retry=RetryPolicy.of(config), create=create, require_key=require_key,
    )  # fmt: skip


def clone_disclosure(grant: ConsentGrant, route: str) -> str:
    """One sentence for the output's disclosure metadata (no personal name: the speaker id only)."""
    engine = "Qwen3-TTS Base, local" if route == "local" else f"DashScope {VC_MODEL}"
    return (
        f" Voice: cloned from speaker {grant.speaker_id} ({engine}) with recorded consent "
        f"{grant.record_hash[:12]}."
    )


def clone_report(grant: ConsentGrant, route: str, synth: Any | None = None) -> dict[str, Any]:
    """The report.json block of a cloned-voice job (hashes and ids, no text)."""
    report: dict[str, Any] = {
        "speaker_id": grant.speaker_id,
        "route": route,
        "consent_record_sha256": grant.record_hash,
        "consent_use": grant.use,
        "consent_languages": list(grant.languages),
        "consent_expires_at": grant.record.expires_at.isoformat() if grant.record.expires_at else None,
        "consent_document": grant.document_status,
    }
    identity = synth.identity() if synth is not None else {}
    clone = identity.get("clone") or {}
    report["reference_sha256"] = clone.get("reference_sha256")
    report["model"] = identity.get("model")
    if route == "api":
        report["voice_id"] = identity.get("voice")
    else:
        report["prompt_id"] = identity.get("voice_prompt")
    return report


# -- revocation ------------------------------------------------------------------------------------------


@dataclass
class Revocation:
    record: ConsentRecord
    newly_revoked: bool
    deleted_prompts: list[str] = field(default_factory=list)  # prompt ids
    deleted_voices: list[str] = field(default_factory=list)  # API voice ids
    remaining_voices: list[str] = field(default_factory=list)  # still enrolled: delete them later
    purged_clips: int = 0
    problems: list[DubError] = field(default_factory=list)  # why each remaining voice was not deleted

    @property
    def complete(self) -> bool:
        return not self.remaining_voices


def _forget_prompts(prompt_ids: set[str]) -> None:
    """Drop the speaker's prompts from QwenLocalTTS's in-process memo as well as from disk."""
    import models.qwen_local_tts as qlt

    memo = getattr(qlt, "_PROMPT_MEMO", None)
    if isinstance(memo, dict):
        for key in [k for k in memo if isinstance(k, tuple) and k[-1] in prompt_ids]:
            memo.pop(key, None)


def purge_clips(cache_dir: Path, speaker_id: str) -> int:
    """Delete clip cache entries whose metadata names the speaker (CLIP_META_SPEAKER); returns how many."""
    root = Path(cache_dir) / "clips"
    count = 0
    if not root.is_dir():
        return 0
    for meta_path in root.glob("*/*.json"):
        try:
            meta = read_json(meta_path)
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and meta.get(CLIP_META_SPEAKER) == speaker_id:
            meta_path.unlink(missing_ok=True)  # metadata first: an entry without it is never trusted
            meta_path.with_suffix(".wav").unlink(missing_ok=True)
            count += 1
    return count


def revoke_speaker(
    ledger: Path,
    speaker_id: str,
    reason: str | None,
    cache_dir: Path | None,
    *,
    now: datetime | None = None,
    retry: RetryPolicy | None = None,
) -> Revocation:
    """Revoke a speaker's consent and delete their cloned voices.

    The record is marked revoked first (so nothing can clone or use the voice whatever happens next), then:
    the local clone prompts under <cache_dir>/voice_prompts/clones/<speaker_id>/ are deleted; every API
    voice in <cache_dir>/voices/<speaker_id>.json is deleted on the service and dropped from the cache
    (without a key, or when the service fails, it stays listed in `remaining_voices` and in the cache, so a
    second revoke finishes the job); clip cache entries made with the voice are purged. Each deletion is
    audited ("voice_deleted"). Running it again on a revoked record repeats the clean-up only."""
    record, newly = revoke_record(ledger, speaker_id, reason, now)
    result = Revocation(record=record, newly_revoked=newly)
    if cache_dir is None:
        return result
    record_hash = record.record_hash()

    prompt_dir = clone_prompt_dir(cache_dir, speaker_id)
    prompt_ids: set[str] = set()
    if prompt_dir.is_dir():
        for path in sorted(prompt_dir.glob("*.pt")):
            prompt_ids.add(path.stem.rsplit("-", 1)[-1])
        shutil.rmtree(prompt_dir, ignore_errors=True)
    _forget_prompts(prompt_ids)
    for prompt_id in sorted(prompt_ids):
        result.deleted_prompts.append(prompt_id)
        append_audit(
            ledger,
            {"event": "voice_deleted", "route": "local", "speaker_id": speaker_id,
             "consent_record_hash": record_hash, "prompt_id": prompt_id},
        )  # fmt: skip

    cache = VoiceIdCache(cache_dir, speaker_id)
    clients: dict[str, VoiceEnrollment] = {}
    with cache.locked():
        for entry in cache.entries():
            voice = str(entry["voice"])
            region = str(entry.get("region") or "intl")
            try:
                if region not in clients:
                    clients[region] = VoiceEnrollment(region=region, retry=retry)
                existed = clients[region].delete(voice)
            except DubError as exc:  # no key (InputError) or the service refused (UpstreamError)
                result.remaining_voices.append(voice)
                result.problems.append(exc)
                continue
            cache.remove(voice)
            result.deleted_voices.append(voice)
            append_audit(
                ledger,
                {"event": "voice_deleted", "route": "api", "speaker_id": speaker_id,
                 "consent_record_hash": record_hash, "voice_id": voice, "region": region,
                 "status": "deleted" if existed else "already_gone"},
            )  # fmt: skip
    result.purged_clips = purge_clips(cache_dir, speaker_id)
    return result


def raise_if_incomplete(result: Revocation) -> None:
    """One-line error when enrolled voices remain after a revocation: InputError (exit 2) when the API key
    is missing, else UpstreamError. The record is revoked either way."""
    if result.complete:
        return
    ids = ", ".join(result.remaining_voices)
    first = str(result.problems[0]) if result.problems else "unknown error"
    message = (
        f"consent of {result.record.speaker_id!r} is revoked, but {len(result.remaining_voices)} enrolled "
        f"voice(s) remain to delete: {ids} ({first}); run the revoke command again to delete them"
    )
    if result.problems and all(isinstance(p, InputError) for p in result.problems):
        raise InputError(message)
    raise UpstreamError(message)
