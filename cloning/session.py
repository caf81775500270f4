"""A job's cloned voices: the one object the flow opens before any work and hands to every task that speaks.

    clone = CloneSession.open(config)               # None without --clone; consent checked now, per speaker
    clone.prepare(config, speech_wav, lines, job)    # per cloned speaker: the reference chosen from that
                                                     # speaker's lines, matched against the record's voice
                                                     # print; then each voice created once
    synths = clone.synthesizers(config, job)         # {plan speaker: synthesizer}; consent checked again
    clone.audit_use(config, "ja", lines)             # before a language is spoken, one entry per speaker
    clone.disclosure(config), clone.report(config, synths)

`--clone S2=guest,S3=host` clones plan speakers S2 and S3 (one SpeakerClone each, bound to its consent
record); the other speakers keep their catalogue voices. `--clone guest` is one clone for every line (plan
speaker "*"). A clone is refused (ConsentError, exit 2) before any model load or API call unless its
reference matches the voice print of its record (cloning/voiceprint.py).

A CloneSession is small, frozen and picklable (it travels to Dask workers as a task argument): it holds what
the consent checks found, not the grants themselves, and re-checks the ledger whenever a voice is about to
be created or used, so a revocation (or a changed record) since the job started stops the job there. Which
engine clones, and how, is the registry's business (models.registry CloneSpec): nothing here knows an
engine by name.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cloning.ledger import (
    ConsentError,
    ConsentGrant,
    audit_clone_synthesis,
    audit_job,
    check_consent,
    record_artefact,
)
from core.config import CLONE_EVERY_LINE
from core.errors import ConfigError
from core.files import sha256_file, write_json_atomic
from core.job import JobPaths
from models.registry import CloneSpec, tts_engine

if TYPE_CHECKING:
    from cloning.reference import TimedLine
    from core.config import DubConfig
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


def report_block(session: SpeakerClone, synth: SpeechSynthesizer | None) -> dict[str, Any]:
    """The report.json block of one cloned voice (hashes and ids, no text)."""
    report: dict[str, Any] = {
        "speaker_id": session.speaker_id,
        "plan_speaker": session.plan_speaker,
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


def _job_id(config: DubConfig | JobPaths) -> str:
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


def _slug(plan_speaker: str) -> str:
    """A plan speaker's name as a file name part (names in segments.json are free text)."""
    slug = re.sub(r"[^A-Za-z0-9_-]", "_", plan_speaker)[:40]
    if slug != plan_speaker:
        slug += "-" + hashlib.sha256(plan_speaker.encode("utf-8")).hexdigest()[:8]
    return slug


def _lines_key(plan_speaker: str, speech_wav: Path, lines: Sequence[TimedLine]) -> str:
    """What a chosen reference is a function of: the speaker, the speech file and every line's times and
    speaker (another speaker's line bounds the candidate windows)."""
    state = _file_state(speech_wav)
    spans = [(ln.index, ln.start, ln.end, getattr(ln, "speaker", None), ln.text) for ln in lines]
    data = json.dumps([plan_speaker, str(speech_wav), state, spans], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class SpeakerClone:
    """One cloned voice: a plan speaker ("*": every line) spoken with the voice of one consent record."""

    plan_speaker: str
    speaker_id: str  # the consent record's speaker id
    ledger: Path  # resolved
    use: str  # as the record words it
    languages: tuple[str, ...]  # the job's languages, all covered
    engine: str  # the TTS engine's registry name (recorded as "route" in the audit log)
    record_hash: str  # the record checked at open: a record changed since then stops the job
    document_status: str  # "verified" or "missing" at open
    expires_at: datetime | None
    reference: Path | None = None  # --clone-ref (validated at open), else chosen from the speaker's lines
    reference_text: str | None = None

    @classmethod
    def from_grant(
        cls,
        grant: ConsentGrant,
        engine: str,
        reference: Path | None = None,
        reference_text: str | None = None,
        plan_speaker: str = CLONE_EVERY_LINE,
    ) -> SpeakerClone:
        """The clone of a consent check already made (CloneSession.open is the way in for a job)."""
        return cls(
            plan_speaker=plan_speaker,
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

    @property
    def who(self) -> str:
        return "every line" if self.plan_speaker == CLONE_EVERY_LINE else f"speaker {self.plan_speaker}"

    def speaks(self, speaker: str | None) -> bool:
        """Whether this clone speaks the lines of plan speaker `speaker`."""
        return self.plan_speaker == CLONE_EVERY_LINE or speaker == self.plan_speaker

    def reference_path(self, job: JobPaths) -> Path:
        """The prepared reference: work/clone_reference.wav for every line, else one per plan speaker."""
        if self.plan_speaker == CLONE_EVERY_LINE:
            return job.clone_reference
        return job.clone_reference.with_name(f"clone_reference.{_slug(self.plan_speaker)}.wav")

    def _match_path(self, job: JobPaths) -> Path:
        wav = self.reference_path(job)
        return wav.with_name(wav.name + ".voiceprint.json")

    # -- during the job ----------------------------------------------------------------------------------

    def prepare_reference(self, speech_wav: Path, lines: Sequence[TimedLine], job: JobPaths) -> Path:
        """The reference recording (the user's --clone-ref, or 3-15 s of the cleanest speech chosen from
        THIS speaker's lines of speech_wav), then its voice matched against the record's voice print
        (ConsentError below the threshold). Loads no TTS model and calls no API."""
        wav = self.reference_path(job)
        with audit_job(_job_id(job)):
            # journalled first: revocation cleans this job folder (reference, clips, fits, mixes)
            record_artefact(
                self.ledger, "artefact", self.speaker_id, kind="job", path=str(job.root.resolve())
            )
            return self._prepare_reference(speech_wav, lines, job, wav)

    def _prepare_reference(
        self, speech_wav: Path, lines: Sequence[TimedLine], job: JobPaths, wav: Path
    ) -> Path:
        from cloning.reference import prepare_reference, select_reference

        if self.reference is not None:
            prepare_reference(self.reference, wav, self.reference_text)
        else:
            key = _lines_key(self.plan_speaker, speech_wav, lines)
            key_file = wav.with_name(wav.name + ".lines")
            fresh = wav.is_file() and key_file.is_file() and key_file.read_text().strip() == key
            if not fresh:
                speaker = None if self.plan_speaker == CLONE_EVERY_LINE else self.plan_speaker
                select_reference(speech_wav, lines, out_wav=wav, speaker=speaker)
                key_file.write_text(key + "\n")
        self.check_voice(job)
        return wav

    def check_voice(self, job: JobPaths) -> float:
        """The prepared reference against the record's voice print; the result is kept beside the reference
        (record hash, reference hash, similarity) so a later process need not embed it again."""
        from cloning.voiceprint import check_voice

        wav = self.reference_path(job)
        grant = self.grant()
        score = check_voice(grant, wav, self.plan_speaker)
        write_json_atomic(
            self._match_path(job),
            {"consent_record_hash": grant.record_hash, "reference_sha256": sha256_file(wav),
             "similarity": round(score, 4)},
        )  # fmt: skip
        return score

    def matched_similarity(self, job: JobPaths) -> float | None:
        """The similarity recorded for the reference now in place and this record, or None (not checked)."""
        wav, match = self.reference_path(job), self._match_path(job)
        try:
            data = json.loads(match.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("consent_record_hash") != self.record_hash:
            return None
        if not wav.is_file() or data.get("reference_sha256") != sha256_file(wav):
            return None
        score = data.get("similarity")
        return float(score) if isinstance(score, int | float) else None

    def synthesizer(
        self, config: DubConfig, job: JobPaths, *, require_key: bool = True, create: bool = True
    ) -> SpeechSynthesizer:
        """The cloned voice's synthesizer, built through the engine's CloneSpec from the prepared
        reference; consent is checked again first, and a reference not matched against the record's voice
        print is matched now (ConsentError when it does not match). One per process: later calls return the
        same one. create=False (estimates, dry runs) creates no voice and loads no model."""
        grant = self.grant()
        reference = self.reference_path(job)
        key = (self, str(reference), _file_state(reference), create, require_key, config.model_dump_json())
        with _SYNTHS_LOCK:
            synth = _SYNTHS.get(key)
            if synth is None:
                with audit_job(_job_id(config)):
                    synth = self._build(config, job, grant, reference, create, require_key)
                if len(_SYNTHS) >= _MAX_SYNTHS:
                    _SYNTHS.clear()
                _SYNTHS[key] = synth
        return synth

    def _build(
        self, config: DubConfig, job: JobPaths, grant: ConsentGrant, reference: Path, create: bool,
        require_key: bool,
    ) -> SpeechSynthesizer:  # fmt: skip
        from cloning.reference import load_reference

        wav, text = load_reference(reference)
        if self.matched_similarity(job) is None:
            self.check_voice(job)
        return clone_spec(self.engine).build(grant, wav, text, config, create, require_key)

    def audit_use(self, config: DubConfig, language: str, line_count: int) -> None:
        """The "clone_synthesis" audit entry of one language, appended BEFORE it is spoken (ConsentError when
        consent no longer holds: do not synthesise). The job id is the flow run's, else the video name."""
        audit_clone_synthesis(
            self.grant(), job_id=_job_id(config), language=language, line_count=line_count,
            engine=self.engine, plan_speaker=self.plan_speaker,
        )  # fmt: skip

    # -- after the job -----------------------------------------------------------------------------------

    def disclosure(self, config: DubConfig) -> str:
        """The sentence that names the cloned voice in the output's disclosure metadata."""
        return disclosure_line(self.speaker_id, self.record_hash, clone_spec(self.engine).engine(config))

    def report(self, config: DubConfig, synth: SpeechSynthesizer | None) -> dict[str, Any]:
        """The report.json block of this cloned voice (hashes and ids, no text)."""
        block = report_block(self, synth)
        block["voice_print_similarity"] = self.matched_similarity(JobPaths(config.out_dir, config.name))
        return block


class _Spoken(Protocol):
    speaker: str


@dataclass(frozen=True)
class CloneSession:
    """The job's cloned voices, one SpeakerClone per cloned plan speaker (see the module docstring)."""

    clones: tuple[SpeakerClone, ...]

    # -- before any work ---------------------------------------------------------------------------------

    @classmethod
    def open(cls, config: DubConfig) -> CloneSession | None:
        """None without --clone. Otherwise each clone's consent is checked now (ledger, speaker, languages,
        use, expiry, revocation, a voice print in the record: the one-line ConsentError), --clone-ref is
        validated, and an engine that cannot clone is refused. Loads no model and calls no API."""
        from cloning.voiceprint import require_voice_print

        speakers = config.clone_speakers
        if not speakers:
            return None
        if config.consent_dir is None or not config.clone_use:
            raise ConsentError("--clone needs --consent-dir DIR and --clone-use TEXT")
        clones = []
        for plan_speaker, speaker_id in speakers.items():
            grant = check_consent(config.consent_dir, speaker_id, config.langs, config.clone_use)
            require_voice_print(grant.record, grant.ledger)
            clones.append(SpeakerClone.from_grant(grant, config.tts, config.clone_ref, config.clone_ref_text,
                                                  plan_speaker))  # fmt: skip
        if config.clone_ref is not None:
            from cloning.reference import validate_reference

            validate_reference(config.clone_ref)
        clone_spec(config.tts)
        return cls(tuple(clones))

    @property
    def every_line(self) -> bool:
        """One clone speaks every line (--clone SPEAKER_ID)."""
        return any(c.plan_speaker == CLONE_EVERY_LINE for c in self.clones)

    def clone_for(self, speaker: str | None) -> SpeakerClone | None:
        """The clone that speaks plan speaker `speaker`'s lines, or None (a catalogue voice speaks them)."""
        return next((c for c in self.clones if c.speaks(speaker)), None)

    def check_speakers(self, lines: Sequence[_Spoken]) -> None:
        """ConfigError (one line) when --clone names a plan speaker with no line in the plan."""
        if self.every_line:
            return
        present = dict.fromkeys(ln.speaker for ln in lines)
        for clone in self.clones:
            if clone.plan_speaker not in present:
                known = ", ".join(str(s) for s in present) or "none"
                raise ConfigError(
                    f"--clone {clone.plan_speaker}={clone.speaker_id}: the plan has no speaker "
                    f"{clone.plan_speaker} (its speakers: {known})"
                )

    # -- during the job ----------------------------------------------------------------------------------

    def prepare(self, config: DubConfig, speech_wav: Path, lines: Sequence[TimedLine], job: JobPaths) -> None:
        """Every clone's reference (chosen from its speaker's lines) matched against its record's voice print,
        all before any voice is created: a mismatch costs nothing. Then each voice is created once
        (enrollment or clone prompt, audited as "clone_created") and reused for every line and language.
        A dry run creates nothing."""
        self.check_speakers(lines)  # type: ignore[arg-type]  # Line has .speaker; TimedLine may not
        for clone in self.clones:
            clone.prepare_reference(speech_wav, lines, job)
        live = not config.dry_run
        self.synthesizers(config, job, require_key=live, create=live)

    def synthesizers(
        self, config: DubConfig, job: JobPaths, *, require_key: bool = True, create: bool = True
    ) -> dict[str, SpeechSynthesizer]:
        """{plan speaker ("*": every line): its clone's synthesizer} (see SpeakerClone.synthesizer)."""
        return {
            c.plan_speaker: c.synthesizer(config, job, require_key=require_key, create=create)
            for c in self.clones
        }

    def audit_use(self, config: DubConfig, language: str, lines: Sequence[_Spoken] | int) -> None:
        """One "clone_synthesis" audit entry per clone that speaks some of `lines` in `language`, appended
        BEFORE they are spoken (ConsentError when a consent no longer holds: do not synthesise). An int
        counts lines all spoken by the clone of every line."""
        for clone in self.clones:
            if isinstance(lines, int):
                count = lines if clone.plan_speaker == CLONE_EVERY_LINE else 0
            else:
                count = sum(1 for ln in lines if clone.speaks(ln.speaker))
            if count:
                clone.audit_use(config, language, count)

    # -- after the job -----------------------------------------------------------------------------------

    def disclosure(self, config: DubConfig) -> str:
        """The sentence(s) that name the cloned voices in the output's disclosure metadata."""
        return "".join(clone.disclosure(config) for clone in self.clones)

    def report(
        self, config: DubConfig, synths: Mapping[str, SpeechSynthesizer] | SpeechSynthesizer | None
    ) -> dict[str, Any]:
        """The report.json block of the job's cloned voices (hashes and ids, no text): the one clone's block
        for --clone SPEAKER_ID, else {"speakers": {plan speaker: block}}."""
        by_speaker: Mapping[str, SpeechSynthesizer] = (
            synths if isinstance(synths, Mapping) else {} if synths is None else {CLONE_EVERY_LINE: synths}
        )
        blocks = {c.plan_speaker: c.report(config, by_speaker.get(c.plan_speaker)) for c in self.clones}
        if self.every_line:
            return blocks[CLONE_EVERY_LINE]
        return {"speakers": blocks}
