"""The answers a paid service gave, written down durably before anything else is done with them.

A job killed (SIGKILL, power loss) after DashScope answered a request but before the answer reached the
clip or translation caches would pay for it again on resume. So every answer is first appended to
`<cache>/journal/answers.jsonl` (one JSON line, `os.fsync`ed) keyed by a hash of the request: the result
URL with its expiry, or the streamed audio (written to `audio/<key>.pcm` and fsynced first), or the reply
text. A resumed job looks a request up before sending it and uses the answer it already paid for. Once
an answer has been handed on to what stores it (the clip cache, the translation cache), it is retired:
the journal holds only answers a crash could otherwise lose, and is no second cache.

Answers older than ANSWER_TTL_S are ignored (and their audio files deleted): DashScope's result URLs live
24 hours (`expires_at`), and an answer that old belongs to a job that was not resumed. The journal holds
request hashes, URLs and answers, never the request text; it is private to the user (0600).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

ANSWER_TTL_S = 24 * 3600  # the life of a DashScope result URL (expires_at), see qwen-reference
JOURNAL_FILE = "answers.jsonl"
AUDIO_DIR = "audio"
SPENT = "spent"  # a record that retires an earlier answer (its URL expired): the request is made again


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AnswerJournal:
    """One journal folder; thread-safe, and safe to share between processes (O_APPEND whole lines)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / JOURNAL_FILE
        self._lock = threading.Lock()
        self._index: dict[str, dict[str, Any]] | None = None

    # -- writing -----------------------------------------------------------------------------------

    def record(self, key: str, kind: str, **fields: Any) -> None:
        """Append one answer and fsync it: when this returns, a kill cannot lose it."""
        self._append([{"key": key, "kind": kind, "at": time.time(), **fields}], durable=True)

    def _append(self, entries: list[dict[str, Any]], durable: bool) -> None:
        line = b"".join(
            (json.dumps(e, ensure_ascii=False, separators=(",", ":")) + "\n").encode() for e in entries
        )
        with self._lock:
            new = not self.path.exists()
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = b"\n" + line  # a line torn by a crash stays alone (and is skipped on reading)
                os.write(fd, line)  # one write of whole lines: appends from several processes never mix
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            if new and durable:
                _fsync_dir(self.root)  # the file's own directory entry survives a crash too
            if self._index is not None:
                for entry in entries:
                    self._index[str(entry["key"])] = entry

    def record_audio(self, key: str, pcm: bytes, **fields: Any) -> None:
        """Streamed audio: the bytes to their own file (fsynced, renamed into place), then the record."""
        folder = self.root / AUDIO_DIR
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{key}.pcm"
        tmp = folder / f".tmp-{key}-{os.getpid()}-{threading.get_ident()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, pcm)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        _fsync_dir(folder)
        self.record(key, "audio", file=target.name, **fields)

    def retire(self, *keys: str) -> None:
        """The answers for `keys` are done with: handed on to what stores them (the clip or translation
        cache), or unusable (an expired URL, audio that is no clip, a rejected reply). The next lookup
        finds nothing. Not fsynced: losing this line costs at most one answer served twice, never a
        payment."""
        now = time.time()
        self._append([{"key": key, "kind": SPENT, "at": now} for key in keys], durable=False)

    # -- reading -----------------------------------------------------------------------------------

    def lookup(self, key: str) -> dict[str, Any] | None:
        """The latest live answer to the request `key`, or None."""
        with self._lock:
            if self._index is None:
                self._index = self._load()
            entry = self._index.get(key)
        if entry is None or entry["kind"] == SPENT or entry["at"] < time.time() - ANSWER_TTL_S:
            return None
        return entry

    def audio(self, entry: dict[str, Any]) -> bytes | None:
        try:
            return (self.root / AUDIO_DIR / str(entry["file"])).read_bytes()
        except (OSError, KeyError):
            return None

    def _load(self) -> dict[str, dict[str, Any]]:
        index: dict[str, dict[str, Any]] = {}
        try:
            raw = self.path.read_bytes()
        except OSError:
            return index
        for line in raw.splitlines():
            try:
                entry = json.loads(line)
                index[str(entry["key"])] = entry
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by a crash mid-write: that answer was never complete
        self._prune_audio(index)
        return index

    def _prune_audio(self, index: dict[str, dict[str, Any]]) -> None:
        folder = self.root / AUDIO_DIR
        if not folder.is_dir():
            return
        stale = time.time() - ANSWER_TTL_S
        for path in folder.iterdir():
            entry = index.get(path.stem)
            try:
                retired = entry is not None and (entry["kind"] == SPENT or entry["at"] < stale)
                orphan = entry is None and path.stat().st_mtime < stale  # a write a kill cut short
                if retired or orphan:
                    path.unlink(missing_ok=True)
            except OSError:
                continue


_JOURNALS: dict[Path, AnswerJournal] = {}
_JOURNALS_LOCK = threading.Lock()


def journal_at(root: Path) -> AnswerJournal:
    """The process's one journal object for a folder (its index is read once)."""
    key = root.expanduser().resolve()
    with _JOURNALS_LOCK:
        if key not in _JOURNALS:
            _JOURNALS[key] = AnswerJournal(key)
        return _JOURNALS[key]
