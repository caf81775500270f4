"""Revoking a speaker's consent, in one place: the record, every cloned voice made from it, and every clip
spoken with it.

revoke_speaker marks the record revoked first (so nothing can clone or use the voice whatever happens next),
then deletes the local clone prompts (clone_prompt_dir), deletes every enrolled voice of the speaker on
DashScope (VoiceIdCache lists them; one that cannot be deleted now stays listed there for the next try),
and purges the clip cache through ClipCache.purge, selecting the clips by their CLONE_SPEAKER metadata.
Each deletion is audited ("voice_deleted", its "route" being the engine whose clone it was). Running it
again on a revoked record repeats the clean-up only.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cloning.ledger import ConsentRecord, append_audit, artefacts_of, revoke_record
from cloning.voice import clone_prompt_dir, prompt_id_of
from core.clip_cache import CLONE_SPEAKER, ClipCache
from core.errors import DubError, InputError, UpstreamError
from core.retry import RetryPolicy
from models.dashscope_voice_clone import VoiceEnrollment, VoiceIdCache, preferred_name_for
from models.registry import API, LOCAL


@dataclass
class Revocation:
    record: ConsentRecord
    newly_revoked: bool
    deleted_prompts: list[str] = field(default_factory=list)  # prompt ids
    deleted_voices: list[str] = field(default_factory=list)  # API voice ids
    remaining_voices: list[str] = field(default_factory=list)  # still enrolled: delete them later
    purged_clips: int = 0
    deleted_job_files: list[str] = field(default_factory=list)  # clone-made audio in job folders
    outputs: list[str] = field(default_factory=list)  # finished deliverables made with the voice
    purged_outputs: list[str] = field(default_factory=list)  # those removed (purge_outputs=True)
    undeleted: list[str] = field(default_factory=list)  # files that could not be deleted, with why
    problems: list[DubError] = field(default_factory=list)  # why each remaining voice was not deleted

    @property
    def complete(self) -> bool:
        return not self.remaining_voices and not self.undeleted


def _forget_prompts(prompt_ids: set[str]) -> None:
    """Drop the speaker's prompts from QwenLocalTTS's in-process memo as well as from disk."""
    import models.qwen_local_tts as qlt

    memo = getattr(qlt, "_PROMPT_MEMO", None)
    if isinstance(memo, dict):
        for key in [k for k in memo if isinstance(k, tuple) and k[-1] in prompt_ids]:
            memo.pop(key, None)


def _delete_prompts(
    ledger: Path, cache_dir: Path, speaker_id: str, record_hash: str, result: Revocation
) -> None:
    prompt_dir = clone_prompt_dir(cache_dir, speaker_id)
    prompt_ids: set[str] = set()
    if prompt_dir.is_dir():
        for path in sorted(prompt_dir.glob("*.pt")):
            prompt_ids.add(prompt_id_of(path) or path.name)
        shutil.rmtree(prompt_dir, ignore_errors=True)
    _forget_prompts(prompt_ids)
    for prompt_id in sorted(prompt_ids):
        result.deleted_prompts.append(prompt_id)
        append_audit(
            ledger,
            {"event": "voice_deleted", "route": LOCAL, "speaker_id": speaker_id,
             "consent_record_hash": record_hash, "prompt_id": prompt_id},
        )  # fmt: skip


def _delete_enrolled_voices(
    ledger: Path, cache_dir: Path, speaker_id: str, record_hash: str, retry: RetryPolicy | None,
    result: Revocation,
) -> None:  # fmt: skip
    cache = VoiceIdCache(cache_dir, speaker_id)
    if not cache.dir.is_dir():
        return
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
                {"event": "voice_deleted", "route": API, "speaker_id": speaker_id,
                 "consent_record_hash": record_hash, "voice_id": voice, "region": region,
                 "status": "deleted" if existed else "already_gone"},
            )  # fmt: skip
        if not cache.entries():  # nothing left of the speaker here: their lock file goes too
            (cache.dir / f"{speaker_id}.json.lock").unlink(missing_ok=True)


def revoke_speaker(
    ledger: Path,
    speaker_id: str,
    reason: str | None,
    cache_dir: Path | None,
    *,
    now: datetime | None = None,
    retry: RetryPolicy | None = None,
    purge_outputs: bool = False,
) -> Revocation:
    """Revoke a speaker's consent and delete everything made with their voice under cache_dir (nothing
    but the record when cache_dir is None). See the module docstring."""
    record, newly = revoke_record(ledger, speaker_id, reason, now)
    result = Revocation(record=record, newly_revoked=newly)
    if cache_dir is None:
        return result
    record_hash = record.record_hash()
    journal = artefacts_of(ledger, speaker_id)
    # every cache folder a clone of this speaker was made in (the ledger journals them), and this one
    caches = [Path(cache_dir)] + [Path(str(e["cache_dir"])) for e in journal if e.get("cache_dir")]
    seen: set[Path] = set()

    def spoken_by_speaker(meta: dict[str, Any]) -> bool:
        return meta.get(CLONE_SPEAKER) == speaker_id

    for cache in caches:
        key = cache.expanduser().resolve()
        if key in seen:
            continue
        seen.add(key)
        _delete_prompts(ledger, cache, speaker_id, record_hash, result)
        _delete_enrolled_voices(ledger, cache, speaker_id, record_hash, retry, result)
        if cache.is_dir():
            result.purged_clips += len(ClipCache(cache).purge(spoken_by_speaker))
    _delete_journalled_voices(ledger, journal, speaker_id, record_hash, retry, result)
    jobs = dict.fromkeys(Path(str(e["path"])) for e in journal if e.get("kind") == "job" and e.get("path"))
    for job in jobs:
        _clean_job(job, purge_outputs, result)
    return result


# audio a job extracted from its video (not made with a cloned voice): kept by revoke
SOURCE_AUDIO = frozenset({"audio.wav", "analysis.wav", "vocals.wav", "background.wav"})
AUDIO_SUFFIXES = frozenset({".wav", ".mka", ".flac", ".m4a", ".mp3", ".opus", ".ogg", ".aac"})
OUTPUT_SUFFIXES = AUDIO_SUFFIXES | {".mkv", ".mp4", ".mov", ".webm"}


def _unlink(path: Path, done: list[str], result: Revocation) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return
    except OSError as exc:
        result.undeleted.append(f"{path} ({exc.strerror or exc})")
        return
    done.append(str(path))


def _clean_job(job: Path, purge_outputs: bool, result: Revocation) -> None:
    """A job folder that spoke with the voice: every audio file under work/ but the audio taken from the
    video (the references, clip links, fitted clips, mixes) is deleted; the finished deliverables (dubbed
    videos, stems) are listed, and deleted with purge_outputs."""
    work = job / "work"
    if work.is_dir():
        for path in sorted(work.rglob("*")):
            source = path.relative_to(work).as_posix() in SOURCE_AUDIO
            if path.is_file() and path.suffix.lower() in AUDIO_SUFFIXES and not source:
                _unlink(path, result.deleted_job_files, result)
    if job.is_dir():
        for path in sorted(job.iterdir()):
            if path.is_file() and path.suffix.lower() in OUTPUT_SUFFIXES:
                result.outputs.append(str(path))
                if purge_outputs:
                    _unlink(path, result.purged_outputs, result)


def _delete_journalled_voices(
    ledger: Path, journal: list[dict[str, Any]], speaker_id: str, record_hash: str,
    retry: RetryPolicy | None, result: Revocation,
) -> None:  # fmt: skip
    """Voices the ledger says were enrolled (wherever their id cache went), and every voice on the account
    named like this speaker's enrollments in a region where an enrollment was started (its id may never
    have been kept: a crash right after the service answered)."""
    done = set(result.deleted_voices) | set(result.remaining_voices)
    wanted: dict[str, str] = {}  # voice -> region
    regions: dict[str, set[str]] = {}  # region -> preferred names enrolled there
    for entry in journal:
        region = str(entry.get("region") or "intl")
        if entry.get("event") == "artefact" and entry.get("kind") == "enrolled_voice" and entry.get("voice"):
            wanted.setdefault(str(entry["voice"]), region)
        if entry.get("event") == "enroll_intent":
            regions.setdefault(region, set()).add(
                str(entry.get("preferred_name") or preferred_name_for(speaker_id))
            )
    clients: dict[str, VoiceEnrollment] = {}
    for region, names in sorted(regions.items()):
        try:
            clients[region] = client = VoiceEnrollment(region=region, retry=retry)
            for voice in _account_voices(client):
                if any(voice_named(voice, name) for name in names):
                    wanted.setdefault(voice, region)
        except DubError as exc:  # no key or the service refused: say so, and keep it as not done
            result.problems.append(exc)
            result.remaining_voices.append(f"(voices named {', '.join(sorted(names))} in {region})")
    for voice, region in sorted(wanted.items()):
        if voice in done:
            continue
        try:
            if region not in clients:
                clients[region] = VoiceEnrollment(region=region, retry=retry)
            existed = clients[region].delete(voice)
        except DubError as exc:
            result.remaining_voices.append(voice)
            result.problems.append(exc)
            continue
        if existed:
            result.deleted_voices.append(voice)
        append_audit(
            ledger,
            {"event": "voice_deleted", "route": API, "speaker_id": speaker_id,
             "consent_record_hash": record_hash, "voice_id": voice, "region": region,
             "status": "deleted" if existed else "already_gone"},
        )  # fmt: skip


def voice_named(voice: str, preferred_name: str) -> bool:
    """Whether an enrolled voice id carries this preferred_name. The id format is taken from the service's
    answers as the loopback server reproduces them (qwen-tts-vc-<preferred_name>-voice-<time>-<hex>);
    UNCONFIRMED against every live region, so the name must be followed by "-voice-" exactly."""
    return f"-{preferred_name}-voice-" in voice


def _account_voices(client: VoiceEnrollment, page_size: int = 100, max_pages: int = 100) -> list[str]:
    voices: list[str] = []
    for page in range(max_pages):
        items = client.list(page_size=page_size, page_index=page)
        voices.extend(str(item["voice"]) for item in items if item.get("voice"))
        if len(items) < page_size:
            break
    return voices


def raise_if_incomplete(result: Revocation) -> None:
    """One-line error when enrolled voices or files remain after a revocation: InputError (exit 2) when the
    API key is missing, else UpstreamError. The record is revoked either way."""
    if result.complete:
        return
    if not result.remaining_voices:
        raise UpstreamError(
            f"consent of {result.record.speaker_id!r} is revoked, but {len(result.undeleted)} file(s) made "
            f"with the voice could not be deleted: {'; '.join(result.undeleted)}"
        )
    ids = ", ".join(result.remaining_voices)
    first = str(result.problems[0]) if result.problems else "unknown error"
    message = (
        f"consent of {result.record.speaker_id!r} is revoked, but {len(result.remaining_voices)} enrolled "
        f"voice(s) remain to delete: {ids} ({first}); run the revoke command again to delete them"
    )
    if result.problems and all(isinstance(p, InputError) for p in result.problems):
        raise InputError(message)
    raise UpstreamError(message)
