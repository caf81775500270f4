"""The tamper-evident consent ledger (cloning/chain.py, cloning/ledger.py): editing any field of a record
event or an audit entry, deleting or reordering entries, truncating a chain, or a bad signature is found by
`consent verify` (exit 2, naming the first bad entry) and refuses a clone job before anything is made; an old
plain-JSON ledger is refused until `consent upgrade` reads it into the chain."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cloning.chain import KEY_ENV, entry_hash
from cloning.cli import main as consent_cli
from cloning.ledger import (
    AUDIT_FILE,
    CHAIN_FILE,
    ConsentError,
    add_record,
    check_consent,
    load_record,
    read_audit,
    revoke_record,
    verify_ledger,
)
from cloning.session import CloneSession
from core.config import DubConfig
from models.registry import API

ROOT = Path(__file__).resolve().parents[1]
USE = "Dubbing of the Example channel"
GRANTED = datetime(2025, 1, 1, tzinfo=UTC)
EXPIRES = datetime(2099, 1, 1, tzinfo=UTC)


def _add(ledger: Path, speaker: str, document: Path, **extra: object) -> None:
    add_record(
        ledger, speaker_id=speaker, speaker_name=speaker.title(), granted_by=speaker.title(),
        document=document, permitted_languages=["ja", "en"], permitted_uses=[USE],
        granted_at=GRANTED, expires_at=EXPIRES, **extra,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    """alice (granted), bob (granted then revoked), carol (granted): 4 chain events, 4 audit entries."""
    path = tmp_path / "ledger"
    docs = path / "docs"
    docs.mkdir(parents=True)
    for name in ("alice", "bob", "carol"):
        (docs / f"{name}.pdf").write_bytes(f"%PDF-1.4 consent of {name}".encode())
    _add(path, "alice", docs / "alice.pdf")
    _add(path, "bob", docs / "bob.pdf")
    revoke_record(path, "bob", "asked us to stop", now=datetime(2026, 2, 1, tzinfo=UTC))
    _add(path, "carol", docs / "carol.pdf")
    return path


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write(path: Path, entries: list[dict]) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))


def _edit(name: str, index: int, change: Callable[[dict], None]) -> Callable[[Path], None]:
    def tamper(ledger: Path) -> None:
        entries = _lines(ledger / name)
        change(entries[index])
        _write(ledger / name, entries)

    return tamper


def _unrevoke(entry: dict) -> None:  # the revocation event of bob: revoked back to false
    entry["record"].update(revoked=False, revoked_at=None, revoked_reason=None)


def _extend(entry: dict) -> None:
    entry["record"]["expires_at"] = "2199-01-01T00:00:00Z"


def _rehash(change: Callable[[dict], None]) -> Callable[[dict], None]:
    """An edit that recomputes the entry's own hash (it still breaks the next entry's link)."""

    def edit(entry: dict) -> None:
        change(entry)
        entry["hash"] = entry_hash(entry)

    return edit


def _delete(name: str, index: int) -> Callable[[Path], None]:
    def tamper(ledger: Path) -> None:
        entries = _lines(ledger / name)
        del entries[index]
        _write(ledger / name, entries)

    return tamper


def _swap(name: str, i: int, j: int) -> Callable[[Path], None]:
    def tamper(ledger: Path) -> None:
        entries = _lines(ledger / name)
        entries[i], entries[j] = entries[j], entries[i]
        _write(ledger / name, entries)

    return tamper


def _truncate(name: str, keep: int) -> Callable[[Path], None]:
    def tamper(ledger: Path) -> None:
        _write(ledger / name, _lines(ledger / name)[:keep])

    return tamper


def _delete_files(*names: str) -> Callable[[Path], None]:
    def tamper(ledger: Path) -> None:
        for name in names:
            (ledger / name).unlink()

    return tamper


def _set(key: str, value: object) -> Callable[[dict], None]:
    def change(entry: dict) -> None:
        entry[key] = value

    return change


TAMPERING: list[tuple[str, Callable[[Path], object], str]] = [
    (
        "unrevoke a record",
        _edit(CHAIN_FILE, 2, _unrevoke),
        f"{CHAIN_FILE} entry 3: its content does not match",
    ),
    ("move expires_at", _edit(CHAIN_FILE, 0, _extend), f"{CHAIN_FILE} entry 1: its content does not match"),
    ("edit and rehash", _edit(CHAIN_FILE, 0, _rehash(_extend)), f"{CHAIN_FILE} entry 2: does not chain"),
    (
        "edit the time",
        _edit(CHAIN_FILE, 1, _set("time", "2020-01-01T00:00:00+00:00")),
        f"{CHAIN_FILE} entry 2",
    ),
    ("edit the actor", _edit(CHAIN_FILE, 3, _set("actor", "mallory")), f"{CHAIN_FILE} entry 4"),
    ("edit the record hash", _edit(CHAIN_FILE, 0, _set("record_hash", "0" * 64)), f"{CHAIN_FILE} entry 1"),
    ("delete an event", _delete(CHAIN_FILE, 2), f"{CHAIN_FILE} entry 3: out of sequence"),
    ("reorder events", _swap(CHAIN_FILE, 1, 2), f"{CHAIN_FILE} entry 2: out of sequence"),
    ("truncate the chain", _truncate(CHAIN_FILE, 2), f"{CHAIN_FILE} entry 3: missing"),
    ("empty the chain", _truncate(CHAIN_FILE, 0), f"{CHAIN_FILE} entry 1: missing"),
    ("edit an audit event", _edit(AUDIT_FILE, 2, _set("event", "consent_granted")), f"{AUDIT_FILE} entry 3"),
    ("edit an audit reason", _edit(AUDIT_FILE, 2, _set("reason", "typo")), f"{AUDIT_FILE} entry 3"),
    ("edit an audit job", _edit(AUDIT_FILE, 0, _set("job_id", "other-job")), f"{AUDIT_FILE} entry 1"),
    ("delete an audit entry", _delete(AUDIT_FILE, 0), f"{AUDIT_FILE} entry 1: out of sequence"),
    ("reorder audit entries", _swap(AUDIT_FILE, 2, 3), f"{AUDIT_FILE} entry 3: out of sequence"),
    ("truncate the audit log", _truncate(AUDIT_FILE, 3), f"{AUDIT_FILE} entry 4: missing"),
    (
        "delete a head file",
        lambda p: (p / f"{CHAIN_FILE}.head").unlink(),
        "head file ledger.chain.head is missing",
    ),
    ("delete the audit log", lambda p: (p / AUDIT_FILE).unlink(), f"{AUDIT_FILE} entry 1: missing"),
    ("delete audit log and head", _delete_files(AUDIT_FILE, f"{AUDIT_FILE}.head"), "audit.log is missing"),
    (
        "edit a record copy",
        lambda p: (p / "bob.json").write_text("{}"),
        "bob.json differs from ledger.chain entry 3",
    ),
    (
        "change a document",
        lambda p: (p / "docs" / "carol.pdf").write_bytes(b"%PDF other"),
        "entry 4 (speaker 'carol')",
    ),
]


def job_config(ledger: Path, tmp_path: Path, speaker: str) -> DubConfig:
    return DubConfig(
        video=tmp_path / "video.mp4", langs=["ja"], tts=API, clone=speaker, consent_dir=ledger, clone_use=USE,
        cache_dir=tmp_path / "cache", out=tmp_path / "job", source_lang="en",
    )  # fmt: skip


def test_an_untouched_ledger_verifies(ledger: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = verify_ledger(ledger)
    assert (result.events, result.audit_entries, result.signed) == (4, 4, False)
    assert result.documents == {"alice": "verified", "carol": "verified"}
    assert consent_cli(["verify", "--ledger", str(ledger)]) == 0
    assert "ledger verifies: 4 ledger event(s), 4 audit entries" in capsys.readouterr().out
    assert {e["job_id"] for e in read_audit(ledger)} == {"consent-cli"}  # every entry names its job


@pytest.mark.parametrize(("tamper", "named"), [c[1:] for c in TAMPERING], ids=[c[0] for c in TAMPERING])
def test_tampering_is_named_by_verify_and_refuses_every_clone_job(
    ledger: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tamper: Callable[[Path], None],
    named: str,
) -> None:
    tamper(ledger)
    assert consent_cli(["verify", "--ledger", str(ledger)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("error: consent ledger does not verify: ")
    assert named in err
    for speaker in ("alice", "carol"):  # records the tampering did not touch are refused too
        with pytest.raises(ConsentError, match="consent ledger does not verify"):
            CloneSession.open(job_config(ledger, tmp_path, speaker))
        with pytest.raises(ConsentError, match="does not verify"):
            check_consent(ledger, speaker, ["ja"], USE)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "job").exists()


def test_a_dub_job_on_a_tampered_ledger_is_one_error_line_exit_2_before_any_work(
    ledger: Path, tmp_path: Path
) -> None:
    _edit(CHAIN_FILE, 2, _unrevoke)(ledger)
    out = tmp_path / "out"
    env = {**os.environ, "DASHSCOPE_API_KEY": "sk-test", "DASHSCOPE_HTTP_BASE_URL": "http://127.0.0.1:9"}
    proc = subprocess.run(
        [sys.executable, "-m", "flows.dub", str(ROOT / "media_samples" / "sample.mp4"), "--langs", "ja",
         "--separator", "none", "--out", str(out), "--clone", "bob", "--consent-dir", str(ledger),
         "--clone-use", USE, "--cache-dir", str(tmp_path / "cache")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith(
        "error: consent ledger does not verify: ledger.chain entry 3"
    )
    assert not out.exists() or not any(out.iterdir())
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.wav"))


def test_a_signed_chain_needs_its_key_and_an_edit_with_recomputed_hashes_fails_the_signature(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(KEY_ENV, "a secret only the operator holds")
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    (ledger / "doc.pdf").write_bytes(b"%PDF-1.4 signed")
    _add(ledger, "alice", ledger / "doc.pdf")
    revoke_record(ledger, "alice", "stop")
    assert verify_ledger(ledger).signed
    # the whole chain recomputed without the key (what a local edit can do): every hash is consistent,
    # but the signatures are not
    entries = _lines(ledger / CHAIN_FILE)
    _unrevoke(entries[1])
    entries[1].pop("mac")
    entries[1]["hash"] = entry_hash(entries[1])
    _write(ledger / CHAIN_FILE, entries)
    (ledger / f"{CHAIN_FILE}.head").write_text(json.dumps({"seq": 2, "hash": entries[1]["hash"]}))
    (ledger / "alice.json").write_text(json.dumps(entries[1]["record"]))
    with pytest.raises(ConsentError, match="entry 2: unsigned entry after signed ones"):
        verify_ledger(ledger)
    entries[1]["mac"] = "0" * 64
    _write(ledger / CHAIN_FILE, entries)
    with pytest.raises(ConsentError, match=f"entry 2: bad signature .*{KEY_ENV}"):
        load_record(ledger, "alice")
    monkeypatch.delenv(KEY_ENV)  # dropping the key does not silence the check
    assert consent_cli(["verify", "--ledger", str(ledger)]) == 2
    assert f"entry 1: the chain is signed; set {KEY_ENV}" in capsys.readouterr().err


def test_an_old_plain_json_ledger_is_refused_until_upgraded_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    (ledger / "doc.pdf").write_bytes(b"%PDF-1.4 old")
    _add(ledger, "alice", ledger / "doc.pdf")
    record = load_record(ledger, "alice")
    old_audit = [{k: v for k, v in e.items() if k not in ("seq", "prev", "hash", "mac", "job_id")}
                 for e in read_audit(ledger)]  # fmt: skip
    for name in (
        CHAIN_FILE,
        f"{CHAIN_FILE}.head",
        f"{CHAIN_FILE}.lock",
        f"{AUDIT_FILE}.head",
        f"{AUDIT_FILE}.lock",
    ):
        (ledger / name).unlink()
    (ledger / AUDIT_FILE).write_text("".join(json.dumps(e) + "\n" for e in old_audit))  # as before the chain

    with pytest.raises(ConsentError, match="predates the tamper-evident format; upgrade it once"):
        check_consent(ledger, "alice", ["ja"], USE)
    assert consent_cli(["upgrade", "--ledger", str(ledger)]) == 0
    assert "1 record(s) and 1 audit entries chained" in capsys.readouterr().out
    assert check_consent(ledger, "alice", ["ja"], USE).record_hash == record.record_hash()
    assert [e["event"] for e in _lines(ledger / CHAIN_FILE)] == ["migrate"]
    (migrated,) = read_audit(ledger)
    assert migrated["migrated"] is True and migrated["event"] == "consent_granted"
    assert (ledger / "audit.pre-chain.log").read_text().count("\n") == 1  # the old log is kept
    assert consent_cli(["upgrade", "--ledger", str(ledger)]) == 2  # once
    assert "already in the tamper-evident format" in capsys.readouterr().err


def test_renewal_is_an_event_and_the_state_is_the_latest_one(
    ledger: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert consent_cli(["renew", "alice", "--ledger", str(ledger), "--expires", "2100-06-01"]) == 0
    assert "consent renewed: alice" in capsys.readouterr().out
    assert load_record(ledger, "alice").expires_at == datetime(2100, 6, 1, tzinfo=UTC)
    assert [e["event"] for e in _lines(ledger / CHAIN_FILE)][-1] == "renew"
    assert read_audit(ledger)[-1]["event"] == "consent_renewed"
    assert consent_cli(["renew", "bob", "--ledger", str(ledger)]) == 2  # revoked: not renewable
    assert "was revoked" in capsys.readouterr().err
    assert verify_ledger(ledger).events == 5
