"""Atomic file writes and content keys: the two things that make re-runs and crashes safe.

Every stage output is written to a temporary name in the same directory and renamed into place, so a
killed run leaves either the old file, the new file, or a stray `.tmp-*` file that nothing trusts.
A stage output is "fresh" when its sidecar `.keys/<output name>.key` holds the key of the inputs that
produced it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success rename it onto `target`, else delete it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".tmp-{target.stem}-", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; outputs get the user's usual permissions
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(target: Path, data: Any) -> None:
    write_bytes_atomic(target, (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode())


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def content_key(*parts: Any) -> str:
    """A stable hash of JSON-serialisable parts (dict keys sorted)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def _key_path(output: Path) -> Path:
    # kept out of sight in a hidden folder beside the output, so job folders show only real results
    return output.parent / ".keys" / (output.name + ".key")


def is_fresh(output: Path, key: str) -> bool:
    kp = _key_path(output)
    return output.is_file() and kp.is_file() and kp.read_text().strip() == key


def current_key(output: Path) -> str | None:
    """The key an output was last marked with (None when it never was or is gone)."""
    kp = _key_path(output)
    return kp.read_text().strip() if output.is_file() and kp.is_file() else None


def mark_fresh(output: Path, key: str) -> None:
    write_bytes_atomic(_key_path(output), key.encode())


def invalidate(output: Path) -> None:
    _key_path(output).unlink(missing_ok=True)
