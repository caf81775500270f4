"""Consent for voice cloning: a ledger of who agreed that their voice may be cloned, for which languages and
uses, until when and on which signed document; and an append-only audit log of every clone and every use.

Cloning someone's voice is only done for a speaker with a valid record here (check_consent); nothing else
in the project creates a cloned voice without the ConsentGrant that check returns.

Ledger layout (a folder the user keeps and backs up; nothing in it is a secret):

    <ledger>/ledger.chain        the truth: every change of a record (add, replace, renew, revoke, migrate) as
                                 an event holding the whole new record, chained (cloning/chain.py), signed
                                 with $QWENDUB_LEDGER_KEY when set; a record's state is its latest event
    <ledger>/<speaker_id>.json   a readable copy of the current record, written after each event; a copy that
                                 differs from the chain is reported as tampering (it never grants anything)
    <ledger>/audit.log           the audit log, chained the same way (one JSON line per entry, seq/prev/hash)
    <ledger>/*.head              each chain's last entry (catches a truncated chain)
    <ledger>/...                 signed documents may live here too and are then referenced relatively
    <ledger>/samples/<id>.<ext>  a voice sample, only when kept (`add --sample FILE --keep-sample`)

A record binds consent to a voice: its voice print (cloning/voiceprint.py) is the speaker embedding of the
sample recording given at `add --sample FILE`; a job clones a voice only when its reference matches it.

The audit log never holds script text: its entries are built from an allow-list of fields (AUDIT_FIELDS).

Every read of a record verifies both chains first (check_consent, load_record, list_records): a ledger whose
chain does not verify grants nothing, and the error names the first bad entry (`consent verify` prints it).
A ledger from before the chain (plain <speaker>.json files and an unchained audit.log) is refused until it is
upgraded once, explicitly, with `consent upgrade` (upgrade_ledger): its records are read into the chain as
"migrate" events, its audit entries are chained in their order, and the old audit.log is kept beside it as
audit.pre-chain.log. An upgrade cannot vouch for what happened before it; the chain protects from then on.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from cloning.chain import ChainError, append_entry, read_chain
from core.errors import DubError
from core.files import sha256_file, write_bytes_atomic, write_json_atomic
from core.languages import LANGUAGES, Language

log = logging.getLogger(__name__)

RECORD_FORMAT = 1
SPEAKER_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
AUDIT_FILE = "audit.log"
CHAIN_FILE = "ledger.chain"
PRE_CHAIN_AUDIT = "audit.pre-chain.log"
RECORD_EVENTS = frozenset({"add", "replace", "renew", "revoke", "migrate"})
CLI_JOB = "consent-cli"  # the job an audit entry names when no dubbing job made it (the consent command)
AUDIT_EVENTS = frozenset(
    {
        "consent_granted",  # a record was added
        "consent_replaced",  # a record was superseded by a new one (add --replace)
        "consent_revoked",
        "consent_renewed",  # a record's expiry was moved (renew)
        "clone_created",  # a voice was enrolled (api) or a clone prompt computed (local)
        "clone_synthesis",  # a job used a cloned voice for one language
        "voice_print_checked",  # a job compared a speaker's reference with the record's voice print
        "voice_deleted",  # an enrolled voice or a clone prompt was deleted
    }
)
# Everything an audit entry may hold. No field carries text of the video (lines, transcript, reference text).
AUDIT_FIELDS = frozenset(
    {
        "event", "time", "actor", "route", "speaker_id", "consent_record_hash", "reference_sha256",
        "voice_id", "prompt_id", "target_model", "model", "region", "job_id", "language", "languages",
        "line_count", "use", "document_status", "reason", "expires_at", "revoked_at", "status", "detail",
        "reference_source", "plan_speaker", "similarity", "threshold", "sample_sha256", "migrated",
    }
)  # fmt: skip
AUDIT_MAX_STRING = 300


class ConsentError(DubError):
    """Cloning is refused: no consent, or consent that does not cover this job. One line, exit code 2."""

    exit_code = 2


# -- the record ----------------------------------------------------------------------------------------


def normalize_use(use: str) -> str:
    """How uses are compared: case-insensitive, whitespace collapsed."""
    return " ".join(use.split()).casefold()


class VoicePrint(BaseModel):
    """The voice a consent is bound to: the speaker embedding of the sample given at enrollment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1, max_length=100)  # models.speaker_embedding.EMBEDDING_MODEL
    vector: list[float] = Field(min_length=1, max_length=4096)
    sample_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    sample_seconds: float = Field(gt=0)
    sample: str | None = Field(default=None, max_length=4096)  # the kept audio (ledger-relative), if kept


class ConsentRecord(BaseModel):
    """One speaker's consent, as stored in <ledger>/<speaker_id>.json."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: int = RECORD_FORMAT
    speaker_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    speaker_name: str = Field(min_length=1, max_length=200)
    granted_by: str = Field(min_length=1, max_length=200)
    granted_at: AwareDatetime
    document: str = Field(min_length=1, max_length=4096)
    document_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    permitted_languages: list[str] = Field(min_length=1)
    permitted_uses: list[str] = Field(min_length=1)
    expires_at: AwareDatetime | None = None
    revoked: bool = False
    revoked_at: AwareDatetime | None = None
    revoked_reason: str | None = Field(default=None, max_length=AUDIT_MAX_STRING)
    voice_print: VoicePrint | None = None  # None: a record from before voice prints (cloning refused)

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: int) -> int:
        if value != RECORD_FORMAT:
            raise ValueError(f"unsupported record format {value} (this version reads {RECORD_FORMAT})")
        return value

    @field_validator("speaker_name", "granted_by", "document")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value

    @field_validator("permitted_languages")
    @classmethod
    def _known_languages(cls, value: list[str]) -> list[str]:
        codes: list[str] = []
        for item in value:
            code = item.strip().lower()
            if code not in LANGUAGES:
                raise ValueError(f"unknown language {item!r}; use ISO 639-1 codes from {' '.join(LANGUAGES)}")
            if code not in codes:
                codes.append(code)
        return codes

    @field_validator("permitted_uses")
    @classmethod
    def _clean_uses(cls, value: list[str]) -> list[str]:
        uses: list[str] = []
        for item in value:
            use = " ".join(item.split())
            if not use:
                raise ValueError("a permitted use must not be blank")
            if len(use) > AUDIT_MAX_STRING:
                raise ValueError(f"a permitted use must be at most {AUDIT_MAX_STRING} characters")
            if normalize_use(use) not in {normalize_use(u) for u in uses}:
                uses.append(use)
        return uses

    @model_validator(mode="after")
    def _consistent(self) -> ConsentRecord:
        if self.expires_at is not None and self.expires_at <= self.granted_at:
            raise ValueError("expires_at must be after granted_at")
        if self.revoked and self.revoked_at is None:
            raise ValueError("a revoked record needs revoked_at")
        if not self.revoked and (self.revoked_at is not None or self.revoked_reason):
            raise ValueError("revoked_at/revoked_reason are set but revoked is false")
        return self

    def stored(self) -> dict[str, Any]:
        """The record as stored: a record without a voice print is written (and hashed) as before voice
        prints existed, so the hashes of older records and their audit entries stay valid."""
        data = self.model_dump(mode="json")
        if data.get("voice_print") is None:
            data.pop("voice_print", None)
        return data

    def canonical_json(self) -> bytes:
        """The record's canonical form: sorted keys, no spaces, UTF-8 (what record_hash hashes)."""
        data = self.stored()
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def record_hash(self) -> str:
        return hashlib.sha256(self.canonical_json()).hexdigest()

    def status(self, now: datetime) -> str:
        """ "revoked", "expired", "pending" (granted_at in the future) or "active"."""
        if self.revoked:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        if now < self.granted_at:
            return "pending"
        return "active"


@dataclass(frozen=True)
class ConsentGrant:
    """What check_consent returns: the record that allows this job, its canonical hash (quoted in every
    audit entry and in the job's report), and what was checked."""

    ledger: Path
    record: ConsentRecord
    record_hash: str
    languages: tuple[str, ...]  # the languages asked for (ISO 639-1), all permitted
    use: str  # the use asked for, as the record words it
    document_path: Path
    document_present: bool  # False: the signed document is not at its path (allowed, noted in the audit)
    checked_at: datetime

    @property
    def speaker_id(self) -> str:
        return self.record.speaker_id

    @property
    def document_status(self) -> str:
        return "verified" if self.document_present else "missing"


# -- time ------------------------------------------------------------------------------------------------


def utc_now() -> datetime:
    return datetime.now(UTC)


def parse_when(value: str) -> datetime:
    """An ISO 8601 date or date-time from a user; a date means its midnight UTC, a time without an offset
    means UTC. ValueError on anything else."""
    text = value.strip()
    if not text:
        raise ValueError("empty date")
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0, 0), tzinfo=UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 date or date-time (e.g. 2026-03-31)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _as_aware(now: datetime | None) -> datetime:
    if now is None:
        return utc_now()
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


def _day(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


# -- the ledger ------------------------------------------------------------------------------------------


def check_speaker_id(speaker_id: str) -> str:
    if not isinstance(speaker_id, str) or not SPEAKER_ID_RE.fullmatch(speaker_id):
        raise ConsentError(f"invalid speaker id {speaker_id!r}: use 1-64 characters of A-Z a-z 0-9 _ -")
    return speaker_id


def record_path(ledger: Path, speaker_id: str) -> Path:
    return Path(ledger) / f"{check_speaker_id(speaker_id)}.json"


def _check_ledger(ledger: Path) -> Path:
    ledger = Path(ledger).expanduser()
    if not ledger.is_dir():
        raise ConsentError(f"consent ledger folder {str(ledger)!r} does not exist")
    return ledger


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "record"
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{where}: {msg}"


def chain_path(ledger: Path) -> Path:
    return Path(ledger) / CHAIN_FILE


def _pre_chain(ledger: Path) -> bool:
    """A ledger written before the chain: records or an audit log, but no ledger.chain."""
    if chain_path(ledger).exists():
        return False
    has_records = any(SPEAKER_ID_RE.fullmatch(p.stem) for p in ledger.glob("*.json"))
    return has_records or audit_path(ledger).exists()


def _chains(ledger: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Both chains, verified (ConsentError naming the first bad entry otherwise)."""
    if _pre_chain(ledger):
        raise ConsentError(
            f"consent ledger {ledger} predates the tamper-evident format; upgrade it once with: "
            f"python -m flows.consent upgrade --ledger {ledger}"
        )
    try:
        events = read_chain(chain_path(ledger))
        audit = read_chain(audit_path(ledger))
    except ChainError as exc:
        raise ConsentError(str(exc)) from None
    if events and not audit:
        raise ConsentError(f"consent ledger does not verify: {AUDIT_FILE} is missing or empty")
    return events, audit


@dataclass(frozen=True)
class LedgerState:
    """The records as the chain says they are now: speaker id -> (record, the chain entry that made it)."""

    records: dict[str, tuple[ConsentRecord, int]]
    events: list[dict[str, Any]]
    audit: list[dict[str, Any]]


def ledger_state(ledger: Path) -> LedgerState:
    """Verify both chains and derive every record's current state from ledger.chain."""
    ledger = _check_ledger(ledger)
    events, audit = _chains(ledger)
    records: dict[str, tuple[ConsentRecord, int]] = {}
    for entry in events:
        if entry.get("event") not in RECORD_EVENTS:
            continue
        seq = int(entry["seq"])
        where = f"consent ledger does not verify: {CHAIN_FILE} entry {seq}"
        try:
            record = ConsentRecord.model_validate(entry.get("record"))
        except ValidationError as exc:
            raise ConsentError(f"{where}: its record is malformed ({_first_error(exc)})") from None
        if record.speaker_id != entry.get("speaker_id") or record.record_hash() != entry.get("record_hash"):
            raise ConsentError(f"{where}: its record does not match its speaker id or record hash")
        records[record.speaker_id] = (record, seq)
    return LedgerState(records=records, events=events, audit=audit)


def load_record(ledger: Path, speaker_id: str) -> ConsentRecord:
    """The speaker's record as the verified chain says it is now; ConsentError when there is none, the
    chain does not verify, or the readable copy <speaker>.json differs from it (edited by hand)."""
    ledger = _check_ledger(ledger)
    path = record_path(ledger, speaker_id)
    state = ledger_state(ledger)
    if speaker_id not in state.records:
        raise ConsentError(
            f"no consent record for speaker {speaker_id!r} in {ledger} "
            f"(add one with: python -m cloning.cli add {speaker_id} --ledger {ledger} ...)"
        )
    record, seq = state.records[speaker_id]
    _check_copy(path, record, seq)
    return record


def _check_copy(path: Path, record: ConsentRecord, seq: int) -> None:
    if not path.exists():
        return  # the copy is for people; the chain alone decides
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        data = None
    if data != record.stored():
        raise ConsentError(
            f"consent ledger does not verify: {path.name} differs from {CHAIN_FILE} entry {seq} "
            "(edited outside the ledger)"
        )


def save_record(ledger: Path, record: ConsentRecord, event: str = "add") -> Path:
    """Append the record's event to the chain, then write its readable copy."""
    if event not in RECORD_EVENTS:
        raise ValueError(f"unknown ledger event {event!r}")
    append_entry(
        chain_path(ledger),
        {"event": event, "time": utc_now().isoformat(), "actor": _actor(), "speaker_id": record.speaker_id,
         "record": record.stored(), "record_hash": record.record_hash()},
    )  # fmt: skip
    path = record_path(ledger, record.speaker_id)
    write_json_atomic(path, record.stored())
    return path


def list_records(ledger: Path) -> list[tuple[str, ConsentRecord | None, str]]:
    """(speaker id, record or None when its copy was edited, problem) for every record in the chain."""
    state = ledger_state(ledger)
    rows: list[tuple[str, ConsentRecord | None, str]] = []
    for speaker_id in sorted(state.records):
        record, seq = state.records[speaker_id]
        try:
            _check_copy(record_path(ledger, speaker_id), record, seq)
        except ConsentError as exc:
            rows.append((speaker_id, None, str(exc)))
            continue
        rows.append((speaker_id, record, ""))
    return rows


def document_path(ledger: Path, record: ConsentRecord) -> Path:
    path = Path(record.document).expanduser()
    return path if path.is_absolute() else Path(ledger) / path


def document_state(ledger: Path, record: ConsentRecord) -> str:
    """ "verified" (present, hash matches), "mismatch" (present, differs) or "missing"."""
    path = document_path(ledger, record)
    if not path.exists():
        return "missing"
    if not path.is_file():
        return "mismatch"
    return "verified" if sha256_file(path) == record.document_sha256 else "mismatch"


def _language_codes(languages: Iterable[str | Language]) -> tuple[str, ...]:
    codes: list[str] = []
    for item in languages:
        code = item.code if isinstance(item, Language) else str(item).strip().lower()
        if code not in LANGUAGES:
            raise ConsentError(f"unknown language {str(item)!r} asked for a cloned voice")
        if code not in codes:
            codes.append(code)
    if not codes:
        raise ConsentError("no target language given for the cloned voice")
    return tuple(codes)


def _language_list(codes: Iterable[str]) -> str:
    return ", ".join(f"{LANGUAGES[c].name} ({c})" for c in codes)


def check_consent(
    ledger: Path,
    speaker_id: str,
    languages: Iterable[str | Language],
    use: str,
    now: datetime | None = None,
) -> ConsentGrant:
    """The speaker's consent for these languages and this use at `now`, or ConsentError with the reason:
    no record, malformed record, revoked, not yet in force, expired, language(s) not covered, use not
    covered, signed document changed, a ledger that does not verify (verify_ledger). A signed document
    that is absent is allowed (the grant says so and the audit entries note it); one that is present must
    match the recorded hash."""
    moment = _as_aware(now)
    ledger = _check_ledger(ledger).resolve()
    check_speaker_id(speaker_id)
    codes = _language_codes(languages)
    wanted_use = normalize_use(use or "")
    if not wanted_use:
        raise ConsentError("no use given for the cloned voice (say what it is for, e.g. --clone-use ...)")
    verify_ledger(ledger)  # the whole ledger: a clone job never starts on a ledger that does not verify
    record = load_record(ledger, speaker_id)
    who = f"speaker {speaker_id!r}"
    if record.revoked:
        assert record.revoked_at is not None
        reason = f" ({record.revoked_reason})" if record.revoked_reason else ""
        raise ConsentError(f"consent of {who} was revoked on {_day(record.revoked_at)}{reason}")
    if record.expires_at is not None and moment >= record.expires_at:
        raise ConsentError(f"consent of {who} expired on {_day(record.expires_at)}")
    if moment < record.granted_at:
        raise ConsentError(f"consent of {who} is not in force before {_day(record.granted_at)}")
    missing = [c for c in codes if c not in record.permitted_languages]
    if missing:
        raise ConsentError(
            f"consent of {who} does not cover {_language_list(missing)} "
            f"(it covers {', '.join(record.permitted_languages)})"
        )
    matches = [u for u in record.permitted_uses if normalize_use(u) == wanted_use]
    if not matches:
        permitted = "; ".join(repr(u) for u in record.permitted_uses)
        raise ConsentError(
            f"consent of {who} does not cover the use {' '.join(use.split())!r} (it covers {permitted})"
        )
    path = document_path(ledger, record)
    state = document_state(ledger, record)
    if state == "mismatch":
        raise ConsentError(
            f"the signed consent document of {who} ({path.name}) does not match the recorded sha256 "
            "(changed or replaced?); re-add the record with the signed document"
        )
    if state == "missing":
        log.warning(
            "the signed consent document of %s is not at %s (allowed; noted in the audit log)", who, path
        )
    return ConsentGrant(
        ledger=ledger,
        record=record,
        record_hash=record.record_hash(),
        languages=codes,
        use=matches[0],
        document_path=path,
        document_present=state == "verified",
        checked_at=moment,
    )


def add_record(
    ledger: Path,
    *,
    speaker_id: str,
    speaker_name: str,
    granted_by: str,
    document: Path,
    permitted_languages: Iterable[str],
    permitted_uses: Iterable[str],
    granted_at: datetime | None = None,
    expires_at: datetime | None = None,
    replace: bool = False,
    sample: Path | None = None,
    keep_sample: bool = False,
) -> ConsentRecord:
    """Write a new record (hashing the signed document now) and audit it. The document is stored relative
    to the ledger when it lies inside it, else as an absolute path. An existing record is only replaced
    with replace=True. `sample`: a recording of the speaker alone (3-60 s of speech) whose voice print
    binds the consent to their voice (without one, cloning is refused); its audio is copied into
    <ledger>/samples/ only with keep_sample=True (when the signed consent covers keeping it)."""
    check_speaker_id(speaker_id)
    doc = Path(document).expanduser()
    if not doc.is_file():
        raise ConsentError(f"signed consent document {str(doc)!r} does not exist")
    doc = doc.resolve()
    ledger = Path(ledger).expanduser()
    ledger.mkdir(parents=True, exist_ok=True)
    try:
        stored = doc.relative_to(ledger.resolve()).as_posix()
    except ValueError:
        stored = str(doc)
    existed = speaker_id in ledger_state(ledger).records  # verifies the chains first
    if existed and not replace:
        raise ConsentError(
            f"a consent record for speaker {speaker_id!r} already exists; use --replace to supersede it"
        )
    if keep_sample and sample is None:
        raise ConsentError("--keep-sample needs --sample FILE")
    voice_print = None
    if sample is not None:
        from cloning.voiceprint import voice_print_of

        sample = Path(sample).expanduser()
        if not sample.is_file():
            raise ConsentError(f"voice sample {str(sample)!r} does not exist")
        kept = f"samples/{speaker_id}{sample.suffix.lower()}" if keep_sample else None
        voice_print = voice_print_of(sample, kept=kept)
    try:
        record = ConsentRecord(
            speaker_id=speaker_id,
            speaker_name=speaker_name,
            granted_by=granted_by,
            granted_at=_as_aware(granted_at),
            document=stored,
            document_sha256=sha256_file(doc),
            permitted_languages=list(permitted_languages),
            permitted_uses=list(permitted_uses),
            expires_at=expires_at,
            voice_print=voice_print,
        )
    except ValidationError as exc:
        raise ConsentError(f"invalid consent record ({_first_error(exc)})") from None
    if voice_print is not None and voice_print.sample is not None and sample is not None:
        (ledger / "samples").mkdir(exist_ok=True)
        write_bytes_atomic(ledger / voice_print.sample, sample.read_bytes())
    save_record(ledger, record, "replace" if existed else "add")
    append_audit(
        ledger,
        {
            "event": "consent_replaced" if existed else "consent_granted",
            "speaker_id": speaker_id,
            "consent_record_hash": record.record_hash(),
            "languages": record.permitted_languages,
            "expires_at": record.expires_at.isoformat() if record.expires_at else None,
            "model": voice_print.model if voice_print else None,
            "sample_sha256": voice_print.sample_sha256 if voice_print else None,
        },
    )
    return record


def revoke_record(
    ledger: Path, speaker_id: str, reason: str | None = None, now: datetime | None = None
) -> tuple[ConsentRecord, bool]:
    """Mark the record revoked (atomically) and audit it; returns (record, newly_revoked). Revoking an
    already revoked record changes nothing (its first revocation stands)."""
    ledger = _check_ledger(ledger)
    record = load_record(ledger, speaker_id)
    if record.revoked:
        return record, False
    moment = _as_aware(now)
    reason = " ".join((reason or "").split())[:AUDIT_MAX_STRING] or None
    # the voice print (biometric data of the speaker) goes with the consent: the record keeps the sample's
    # hash in the audit log only
    revoked = record.model_copy(
        update={"revoked": True, "revoked_at": moment, "revoked_reason": reason, "voice_print": None}
    )
    revoked = ConsentRecord.model_validate(revoked.model_dump())  # re-validate the updated record
    save_record(ledger, revoked, "revoke")
    append_audit(
        ledger,
        {
            "event": "consent_revoked",
            "speaker_id": speaker_id,
            "consent_record_hash": revoked.record_hash(),
            "revoked_at": moment.isoformat(),
            "reason": reason,
            "sample_sha256": record.voice_print.sample_sha256 if record.voice_print else None,
        },
    )
    if record.voice_print is not None and record.voice_print.sample is not None:
        (Path(ledger) / record.voice_print.sample).unlink(missing_ok=True)  # a kept sample goes too
    return revoked, True


def renew_record(ledger: Path, speaker_id: str, expires_at: datetime | None) -> ConsentRecord:
    """Move a record's expiry (None: never), as a "renew" event in the chain, audited. A revoked record
    cannot be renewed (add a new one with --replace)."""
    ledger = _check_ledger(ledger)
    record = load_record(ledger, speaker_id)
    if record.revoked:
        raise ConsentError(f"consent of speaker {speaker_id!r} was revoked; record a new consent instead")
    try:
        renewed = ConsentRecord.model_validate({**record.model_dump(), "expires_at": expires_at})
    except ValidationError as exc:
        raise ConsentError(f"invalid renewal ({_first_error(exc)})") from None
    save_record(ledger, renewed, "renew")
    append_audit(
        ledger,
        {"event": "consent_renewed", "speaker_id": speaker_id, "consent_record_hash": renewed.record_hash(),
         "expires_at": expires_at.isoformat() if expires_at else None},
    )  # fmt: skip
    return renewed


# -- audit log -------------------------------------------------------------------------------------------


def audit_path(ledger: Path) -> Path:
    return Path(ledger) / AUDIT_FILE


def _actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _check_value(key: str, value: Any) -> None:
    scalars = (str, int, float, bool, type(None))
    items = value if isinstance(value, list | tuple) else [value]
    for item in items:
        if not isinstance(item, scalars):
            raise ValueError(f"audit field {key!r} must hold plain values, not {type(item).__name__}")
        if isinstance(item, str) and len(item) > AUDIT_MAX_STRING:
            raise ValueError(f"audit field {key!r} is too long for an audit entry")


_AUDIT_JOB: ContextVar[str | None] = ContextVar("audit_job", default=None)


@contextlib.contextmanager
def audit_job(job_id: str) -> Iterator[None]:
    """Audit entries appended inside this block (in this thread) name this job unless they name one."""
    token = _AUDIT_JOB.set(job_id)
    try:
        yield
    finally:
        _AUDIT_JOB.reset(token)


def append_audit(ledger: Path, event: dict[str, Any]) -> dict[str, Any]:
    """Append one entry to the chained <ledger>/audit.log and return it (with its time, actor, job and chain
    fields added). Every entry names a job: the one given, else the dubbing job of the audit_job block it is
    appended in, else "consent-cli" (the consent command).
    Unknown events and fields outside AUDIT_FIELDS are refused (ValueError): script text has no field to
    go in. Appending to an audit log that does not verify is refused (ConsentError naming the entry)."""
    name = event.get("event")
    if name not in AUDIT_EVENTS:
        raise ValueError(f"unknown audit event {name!r}")
    unknown = set(event) - AUDIT_FIELDS
    if unknown:
        raise ValueError(f"audit fields not allowed: {', '.join(sorted(unknown))}")
    entry: dict[str, Any] = {"time": utc_now().isoformat(), "actor": _actor(), **event}
    entry["job_id"] = entry.get("job_id") or _AUDIT_JOB.get() or CLI_JOB
    for key, value in entry.items():
        _check_value(key, value)
    try:
        return append_entry(audit_path(ledger), entry)
    except ChainError as exc:
        raise ConsentError(str(exc)) from None


def read_audit(ledger: Path) -> list[dict[str, Any]]:
    """Every entry of <ledger>/audit.log, oldest first ([] when there is none), verified (ConsentError
    naming the first bad entry otherwise)."""
    try:
        return read_chain(audit_path(ledger))
    except ChainError as exc:
        raise ConsentError(str(exc)) from None


# -- artefacts made with a cloned voice ---------------------------------------------------------------------

ARTEFACT_EVENTS = frozenset({"enroll_intent", "artefact"})


def record_artefact(ledger: Path, event: str, speaker_id: str, **fields: str | None) -> dict[str, Any]:
    """Journal, in the ledger's chain, something made (or about to be made) with a speaker's cloned voice,
    so that revocation finds it wherever it lies: "enroll_intent" BEFORE a voice is enrolled at the service
    (a crash before its id is kept cannot hide it: revocation lists the account's voices by the name),
    "artefact" once made (fields: kind, and voice/region or path/cache_dir/job_id). Fields hold ids and
    paths only, never text."""
    if event not in ARTEFACT_EVENTS:
        raise ValueError(f"unknown artefact event {event!r}")
    check_speaker_id(speaker_id)
    payload: dict[str, Any] = {
        "event": event, "time": utc_now().isoformat(), "speaker_id": speaker_id,
        "job_id": _AUDIT_JOB.get() or CLI_JOB,
    }  # fmt: skip
    for key, value in fields.items():
        if value is not None:
            _check_value(key, value)
            payload[key] = value
    try:
        return append_entry(chain_path(ledger), payload)
    except ChainError as exc:
        raise ConsentError(str(exc)) from None


def artefacts_of(ledger: Path, speaker_id: str) -> list[dict[str, Any]]:
    """Every enroll_intent/artefact entry of the speaker in the (verified) chain, oldest first."""
    try:
        events = read_chain(chain_path(ledger))
    except ChainError as exc:
        raise ConsentError(str(exc)) from None
    return [e for e in events if e.get("event") in ARTEFACT_EVENTS and e.get("speaker_id") == speaker_id]


# -- verify and upgrade ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    events: int
    audit_entries: int
    signed: bool
    documents: dict[str, str]  # speaker id -> verified / missing (of records not revoked)


def verify_ledger(ledger: Path) -> Verification:
    """Check both chains, every record's readable copy and every signed document's hash (of records not
    revoked; a missing document is allowed and reported, a changed one is not). ConsentError naming the
    first bad entry."""
    state = ledger_state(ledger)
    documents: dict[str, str] = {}
    for speaker_id in sorted(state.records):
        record, seq = state.records[speaker_id]
        _check_copy(record_path(ledger, speaker_id), record, seq)
        if record.revoked:
            continue
        doc_state = document_state(ledger, record)
        if doc_state == "mismatch":
            raise ConsentError(
                f"consent ledger does not verify: {CHAIN_FILE} entry {seq} (speaker {speaker_id!r}): the "
                f"signed document {document_path(ledger, record).name} does not match its recorded sha256"
            )
        documents[speaker_id] = doc_state
    signed = bool(state.events) and "mac" in state.events[-1]
    return Verification(len(state.events), len(state.audit), signed, documents)


def upgrade_ledger(ledger: Path) -> tuple[int, int]:
    """Read a ledger from before the chain into it, once: every valid <speaker>.json becomes a "migrate"
    event, every old audit entry is chained in order (marked "migrated"), the old audit.log is kept as
    audit.pre-chain.log. Returns (records, audit entries) migrated. ConsentError when it is already chained
    or a record does not validate (fix or remove it first: nothing is migrated then)."""
    ledger = _check_ledger(ledger)
    if chain_path(ledger).exists():
        raise ConsentError(f"consent ledger {ledger} is already in the tamper-evident format")
    records: list[ConsentRecord] = []
    for path in sorted(ledger.glob("*.json")):
        if not SPEAKER_ID_RE.fullmatch(path.stem):
            continue
        try:
            record = ConsentRecord.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            raise ConsentError(f"consent record {path.name} is not readable JSON; fix it first") from None
        except ValidationError as exc:
            raise ConsentError(f"consent record {path.name} is malformed ({_first_error(exc)})") from None
        if record.speaker_id != path.stem:
            raise ConsentError(f"consent record {path.name} is for speaker {record.speaker_id!r}")
        records.append(record)
    old_audit: list[dict[str, Any]] = []
    audit = audit_path(ledger)
    if audit.exists():
        for number, raw in enumerate(audit.read_bytes().split(b"\n"), start=1):
            if not raw.strip():
                continue
            try:
                item = json.loads(raw)
            except ValueError:
                item = None
            if not isinstance(item, dict):
                log.warning("audit.log line %d is not a JSON object; not migrated", number)
                continue
            old_audit.append(item)
        os.replace(audit, ledger / PRE_CHAIN_AUDIT)
    for record in records:
        save_record(ledger, record, "migrate")
    for item in old_audit:
        kept = {k: v for k, v in item.items() if k in AUDIT_FIELDS}
        if kept.get("event") not in AUDIT_EVENTS:
            continue
        entry = {"job_id": CLI_JOB, **kept, "migrated": True}
        try:
            append_entry(audit, entry)
        except ChainError as exc:
            raise ConsentError(str(exc)) from None
    if not old_audit or not read_chain(audit):
        append_audit(ledger, {"event": "consent_granted", "status": "migrated", "migrated": True,
                              "detail": f"{len(records)} record(s) read into the chain"})  # fmt: skip
    return len(records), len(old_audit)


def ensure_still_valid(grant: ConsentGrant, now: datetime | None = None) -> None:
    """ConsentError when the grant no longer holds: its record was revoked or changed since the check (the
    ledger is read again), or it expired meanwhile. Cheap; called right before a clone is made or used."""
    current = load_record(grant.ledger, grant.speaker_id)
    who = f"speaker {grant.speaker_id!r}"
    if current.revoked:
        raise ConsentError(f"consent of {who} was revoked on {_day(current.revoked_at or utc_now())}")
    if current.record_hash() != grant.record_hash:
        raise ConsentError(f"the consent record of {who} changed since it was checked; check it again")
    expires = current.expires_at
    if expires is not None and _as_aware(now) >= expires:
        raise ConsentError(f"consent of {who} expired on {_day(expires)}")


def audit_clone_synthesis(
    grant: ConsentGrant,
    *,
    job_id: str,
    language: str,
    line_count: int,
    engine: str,
    plan_speaker: str | None = None,
) -> dict[str, Any]:
    """The "clone_synthesis" entry for one job and language: append it BEFORE synthesising (if it cannot be
    written, or consent no longer holds, ConsentError/OSError: do not synthesise). `engine` is the TTS
    engine's registry name, recorded as the entry's "route"."""
    if language not in grant.languages:
        raise ConsentError(f"language {language!r} was not part of the consent check for this job")
    ensure_still_valid(grant)
    return append_audit(
        grant.ledger,
        {
            "event": "clone_synthesis",
            "job_id": job_id,
            "speaker_id": grant.speaker_id,
            "consent_record_hash": grant.record_hash,
            "language": language,
            "line_count": int(line_count),
            "route": engine,
            "use": grant.use,
            "document_status": grant.document_status,
            **({"plan_speaker": plan_speaker} if plan_speaker is not None else {}),
        },
    )
