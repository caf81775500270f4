"""A job's cloned voice: the one object the flow opens before any work and hands to every task that speaks.

    clone = CloneSession.open(config)               # None without --clone; consent checked now
    clone.prepare(config, speech_wav, lines, job)    # the reference recording, the voice created once
    synth = clone.synthesizer(config, job)           # consent checked again; one per process
    clone.audit_use(config, "ja", len(lines))        # before a language is spoken
    clone.disclosure(config), clone.report(config, synth)

A CloneSession is small, frozen and picklable (it travels to Dask workers as a task argument): it holds what
the consent check found, not the grant itself, and re-checks the ledger whenever the voice is about to be
created or used, so a revocation (or a changed record) since the job started stops the job there. Which
engine clones, and how, is the registry's business (models.registry CloneSpec): nothing here knows an
engine by name.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloning.ledger import ConsentError, ConsentGrant, audit_clone_synthesis, check_consent
from core.errors import ConfigError
from models.registry import CloneSpec, tts_engine

if TYPE_CHECKING:
    from cloning.reference import TimedLine
    from core.config import DubConfig
    from core.job import JobPaths
    from models.base import SpeechSynthesizer

# The identity() field that holds what CloneSpec.reports names, per kind of clone.
_REPORTED_IDENTITY = {"voice_id": "voice", "prompt_id": "voice_prompt"}

# One synthesizer per (session, reference, mode, config) per process: every language task and line task
# of a process shares it (the local engine loads its model once; the API voice is looked up once).
_SYNTHS: dict[tuple[Any, ...], SpeechSynthesizer] = {}
_SYNTHS_LOCK = threading.Lock()
_MAX_SYNTHS = 16  # a long-lived served process does not keep every past job's voice


def clone_spec(engine: str) -> CloneSpec:
    """The engine's clone support, or the one-line ConfigError of an engine without it."""
    spec = tts_engine(engine).clone
    if spec is None:
        raise ConfigError(f"--clone: the {engine} TTS engine cannot speak with a cloned voice")
    return spec


def disclosure_line(speaker_id: str, record_hash: str, engine_label: str) -> str:
    """One sentence for the output's disclosure metadata (no personal name: the speaker id only)."""
    return (
        f" Voice: cloned from speaker {speaker_id} ({engine_label}) with recorded consent {record_hash[:12]}."
    )


def report_block(session: CloneSession, synth: SpeechSynthesizer | None) -> dict[str, Any]:
    """The report.json block of a cloned-voice job (hashes and ids, no text)."""
    report: dict[str, Any] = {
        "speaker_id": session.speaker_id,
        "route": session.engine,
        "consent_record_sha256": session.record_hash,
        "consent_use": session.use,
        "consent_languages": list(session.languages),
        "consent_expires_at": session.expires_at.isoformat() if session.expires_at else None,
        "consent_document": session.document_status,
    }
    identity = synth.identity() if synth is not None else {}
    clone = identity.get("clone") or {}
    report["reference_sha256"] = clone.get("reference_sha256")
    report["model"] = identity.get("model")
    field = clone_spec(session.engine).reports
    report[field] = identity.get(_REPORTED_IDENTITY.get(field, field))
    return report


def _job_id(config: DubConfig) -> str:
    """The Prefect flow run's id inside a run, else the video name."""
    try:
        from prefect.runtime import flow_run

        return str(flow_run.id or config.name)
    except Exception:  # noqa: BLE001 - outside a flow run the video name identifies the job
        return config.name


def _file_state(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


@dataclass(frozen=True)
class CloneSession:
    speaker_id: str
    ledger: Path  # resolved
    use: str  # as the record words it
    languages: tuple[str, ...]  # the job's languages, all covered
    engine: str  # the TTS engine's registry name (recorded as "route" in the audit log)
    record_hash: str  # the record checked at open: a record changed since then stops the job
    document_status: str  # "verified" or "missing" at open
    expires_at: datetime | None
    reference: Path | None = None  # --clone-ref (validated at open), else chosen from the speech
    reference_text: str | None = None

    # -- before any work ---------------------------------------------------------------------------------

    @classmethod
    def open(cls, config: DubConfig) -> CloneSession | None:
        """None without --clone. Otherwise consent is checked now (ledger, speaker, languages, use, expiry,
        revocation: the one-line ConsentError), --clone-ref is validated, and an engine that cannot
        clone is refused. Loads no model and calls no API."""
        if config.clone is None:
            return None
        if config.consent_dir is None or not config.clone_use:
            raise ConsentError("--clone needs --consent-dir DIR and --clone-use TEXT")
        grant = check_consent(config.consent_dir, config.clone, config.langs, config.clone_use)
        if config.clone_ref is not None:
            from cloning.reference import validate_reference

            validate_reference(config.clone_ref)
        clone_spec(config.tts)
        return cls.from_grant(grant, config.tts, config.clone_ref, config.clone_ref_text)

    @classmethod
    def from_grant(
        cls,
        grant: ConsentGrant,
        engine: str,
        reference: Path | None = None,
        reference_text: str | None = None,
    ) -> CloneSession:
        """The session of a consent check already made (open() is the way in for a job)."""
        return cls(
            speaker_id=grant.speaker_id,
            ledger=grant.ledger,
            use=grant.use,
            languages=grant.languages,
            engine=engine,
            record_hash=grant.record_hash,
            document_status=grant.document_status,
            expires_at=grant.record.expires_at,
            reference=reference,
            reference_text=reference_text,
        )

    def grant(self) -> ConsentGrant:
        """Consent checked again now, against the record checked at open (ConsentError otherwise)."""
        grant = check_consent(self.ledger, self.speaker_id, self.languages, self.use)
        if grant.record_hash != self.record_hash:
            raise ConsentError(
                f"the consent record of speaker {self.speaker_id!r} changed since it was checked; "
                "check it again"
            )
        return grant

    # -- during the job ----------------------------------------------------------------------------------

    def prepare(self, config: DubConfig, speech_wav: Path, lines: Sequence[TimedLine], job: JobPaths) -> None:
        """The reference recording at job.clone_reference (the user's --clone-ref, or 3-15 s of the
        cleanest speech chosen from speech_wav) and the cloned voice, created once (enrollment or clone
        prompt, audited as "clone_created") and reused for every line and language. A dry run creates
        nothing."""
        from cloning.reference import prepare_reference, select_reference

        if self.reference is not None:
            prepare_reference(self.reference, job.clone_reference, self.reference_text)
        elif not job.clone_reference.is_file():
            select_reference(speech_wav, lines, out_wav=job.clone_reference)
        live = not config.dry_run
        self.synthesizer(config, job, require_key=live, create=live)

    def synthesizer(
        self, config: DubConfig, job: JobPaths, *, require_key: bool = True, create: bool = True
    ) -> SpeechSynthesizer:
        """The cloned voice's synthesizer, built through the engine's CloneSpec from the prepared
        reference; consent is checked again first. One per process: later calls return the same one.
        create=False (estimates, dry runs) creates no voice and loads no model."""
        from cloning.reference import load_reference

        grant = self.grant()
        reference = job.clone_reference
        key = (self, str(reference), _file_state(reference), create, require_key, config.model_dump_json())
        with _SYNTHS_LOCK:
            synth = _SYNTHS.get(key)
            if synth is None:
                wav, text = load_reference(reference)
                synth = clone_spec(self.engine).build(grant, wav, text, config, create, require_key)
                if len(_SYNTHS) >= _MAX_SYNTHS:
                    _SYNTHS.clear()
                _SYNTHS[key] = synth
        return synth

    def audit_use(self, config: DubConfig, language: str, line_count: int) -> None:
        """The "clone_synthesis" audit entry of one language, appended BEFORE it is spoken (ConsentError when
        consent no longer holds: do not synthesise). The job id is the flow run's, else the video name."""
        audit_clone_synthesis(
            self.grant(), job_id=_job_id(config), language=language, line_count=line_count, engine=self.engine
        )

    # -- after the job -----------------------------------------------------------------------------------

    def disclosure(self, config: DubConfig) -> str:
        """The sentence that names the cloned voice in the output's disclosure metadata."""
        return disclosure_line(self.speaker_id, self.record_hash, clone_spec(self.engine).engine(config))

    def report(self, config: DubConfig, synth: SpeechSynthesizer | None) -> dict[str, Any]:
        """The report.json block of the job's cloned voice (hashes and ids, no text)."""
        return report_block(self, synth)
