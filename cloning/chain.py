"""Hash-chained, append-only logs: the consent ledger's events (ledger.chain) and its audit log (audit.log).

Each line of a chain is one JSON object, the entry:

    {"seq": 1, "prev": "<hash of entry seq-1 or 64 zeros>", ...payload..., "hash": "<sha256>", "mac": "..."}

"hash" is the sha256 of the entry's canonical JSON without "hash" and "mac" (sorted keys, no spaces, UTF-8),
so changing any field of an entry, deleting one, or reordering entries breaks the chain at that entry.
"mac" is HMAC-SHA256 of "hash" under the key in $QWENDUB_LEDGER_KEY, present when that variable is set while
appending: without the key a local edit cannot simply recompute the chain. A chain that has signed entries
is only verified with the key set (a signed chain read without its key is refused, so removing the key does
not silence the check), and once an entry is signed every later one must be.

Truncating the tail is caught by the head file (<chain>.head: the last entry's seq and hash, and its mac when
signed), rewritten atomically after every append under the chain's lock. A crash between the line and the
head leaves the chain one entry ahead of its head, which is accepted (the entry's hash still chains); a head
ahead of the chain, or one whose hash differs from the entry at its seq, is a truncation or a rewrite.

What this cannot catch, said plainly: someone who deletes a chain together with its head, or who holds the
key (or edits an unsigned ledger with this module's code) can rewrite history; back the ledger up elsewhere.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.errors import DubError
from core.files import write_json_atomic

KEY_ENV = "QWENDUB_LEDGER_KEY"
GENESIS = "0" * 64
_SEALS = ("hash", "mac")


class ChainError(DubError):
    """A chain does not verify: edited, reordered, deleted or truncated entries, or a bad signature. The
    message names the file and the first bad entry. Exit code 2 (like a refused consent)."""

    exit_code = 2

    def __init__(self, path: Path, entry: int | None, problem: str) -> None:
        where = f"{path.name} entry {entry}" if entry is not None else path.name
        super().__init__(f"consent ledger does not verify: {where}: {problem}")
        self.path = path
        self.entry = entry
        self.problem = problem


def ledger_key() -> bytes | None:
    value = os.environ.get(KEY_ENV, "")
    return value.encode("utf-8") if value else None


def canonical(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_hash(entry: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({k: v for k, v in entry.items() if k not in _SEALS})).hexdigest()


def _mac(key: bytes, digest: str) -> str:
    return hmac.new(key, digest.encode("ascii"), hashlib.sha256).hexdigest()


def head_path(path: Path) -> Path:
    return path.with_name(path.name + ".head")


@contextlib.contextmanager
def _locked(path: Path, exclusive: bool) -> Iterator[int]:
    """The chain's lock: a sidecar <chain>.lock (the chain and its head change together under it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield fd
    finally:
        os.close(fd)


def _lines(path: Path) -> list[tuple[int, bytes]]:
    if not path.is_file():
        return []
    data = path.read_bytes()
    rows = [(n, raw) for n, raw in enumerate(data.split(b"\n"), start=1) if raw.strip()]
    if rows and not data.endswith(b"\n"):
        # a write cut by a crash: the last line was never completed (and never reached the head); it is
        # dropped when it does not parse, and verified like any other when it does
        try:
            json.loads(rows[-1][1])
        except ValueError:
            rows.pop()
    return rows


def _verify(path: Path, key: bytes | None) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    prev = GENESIS
    signed = False
    for number, raw in _lines(path):
        seq = len(entries) + 1
        try:
            entry = json.loads(raw)
        except ValueError:
            raise ChainError(path, seq, f"line {number} is not JSON") from None
        if not isinstance(entry, dict):
            raise ChainError(path, seq, f"line {number} is not a JSON object")
        if entry.get("seq") != seq:
            said = entry.get("seq")
            raise ChainError(path, seq, f"out of sequence (it says seq {said!r}): deleted or reordered")
        if entry.get("prev") != prev:
            raise ChainError(path, seq, "does not chain to the entry before it: deleted, reordered or edited")
        digest = entry_hash(entry)
        if entry.get("hash") != digest:
            raise ChainError(path, seq, "its content does not match its hash: edited")
        if "mac" in entry:
            signed = True
            if key is None:
                raise ChainError(path, seq, f"the chain is signed; set {KEY_ENV} to verify it")
            if not hmac.compare_digest(str(entry["mac"]), _mac(key, digest)):
                raise ChainError(path, seq, f"bad signature (edited, or {KEY_ENV} is not the signing key)")
        elif signed:
            raise ChainError(path, seq, "unsigned entry after signed ones: appended without the key")
        entries.append(entry)
        prev = digest
    head_file = head_path(path)
    if head_file.is_file():
        try:
            head = json.loads(head_file.read_text(encoding="utf-8"))
            head_seq = int(head["seq"])
            head_hash = str(head["hash"])
        except (ValueError, KeyError, TypeError, OSError):
            raise ChainError(path, None, f"its head file {head_file.name} is malformed") from None
        if head_seq > len(entries):
            raise ChainError(
                path, len(entries) + 1, f"missing: the chain ends at entry {len(entries)} but its head "
                f"records entry {head_seq} (truncated)",
            )  # fmt: skip
        if head_seq >= 1 and entries[head_seq - 1]["hash"] != head_hash:
            raise ChainError(path, head_seq, "differs from the entry its head file recorded: rewritten")
        if "mac" in head:
            if key is None:
                raise ChainError(path, None, f"the chain is signed; set {KEY_ENV} to verify it")
            if not hmac.compare_digest(str(head["mac"]), _mac(key, f"{head_seq}:{head_hash}")):
                raise ChainError(path, None, f"bad signature on its head file {head_file.name}")
        elif signed:
            raise ChainError(path, None, f"its head file {head_file.name} is not signed")
    elif entries:
        raise ChainError(path, None, f"its head file {head_file.name} is missing (truncated or replaced?)")
    return entries


def read_chain(path: Path) -> list[dict[str, Any]]:
    """Every entry of the chain at `path`, verified ([] when there is none); ChainError on the first bad
    entry. Verified with $QWENDUB_LEDGER_KEY when it is set."""
    path = Path(path)
    with _locked(path, exclusive=False):
        return _verify(path, ledger_key())


def append_entry(path: Path, payload: dict[str, Any]) -> dict[str, Any]:
    """Append one entry (the payload chained to the last entry, hashed, signed with $QWENDUB_LEDGER_KEY when
    set) and return it. The chain is verified first (ChainError: nothing is appended to a broken chain).
    One write() under an exclusive lock, fsync'd; then the head is rewritten atomically."""
    path = Path(path)
    if any(k in payload for k in ("seq", "prev", *_SEALS)):
        raise ValueError("a chain payload must not set seq, prev, hash or mac")
    key = ledger_key()
    with _locked(path, exclusive=True):
        entries = _verify(path, key)
        if entries and "mac" in entries[-1] and key is None:
            raise ChainError(path, None, f"the chain is signed; set {KEY_ENV} to append to it")
        entry: dict[str, Any] = {
            "seq": len(entries) + 1, "prev": entries[-1]["hash"] if entries else GENESIS, **payload,
        }  # fmt: skip
        digest = entry_hash(entry)
        entry["hash"] = digest
        if key is not None:
            entry["mac"] = _mac(key, digest)
        line = canonical(entry) + b"\n"
        created = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                # a write cut by a crash (never a verified entry: _verify dropped it): cut it off, so the
                # chain stays one entry per line
                os.ftruncate(fd, os.pread(fd, size, 0).rfind(b"\n") + 1)
            written = 0
            while written < len(line):
                written += os.write(fd, line[written:])
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            with contextlib.suppress(OSError):  # make the new directory entry durable too
                dir_fd = os.open(path.parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        head: dict[str, Any] = {"seq": entry["seq"], "hash": digest}
        if key is not None:
            head["mac"] = _mac(key, f"{entry['seq']}:{digest}")
        write_json_atomic(head_path(path), head)
    return entry
