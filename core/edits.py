"""Files the user may edit (segments.json, lines.<lang>.json): knowing whether they did, and never
overwriting what they did.

When the job writes such a file it records a hash of its *content* (the parsed JSON, so re-indenting or
re-saving it in an editor is not an edit) in `.keys/<name>.written`. The file is the user's when that
record is missing (written by an earlier version, or by the user) or no longer matches. A user's file is
never replaced by a new plan: the new plan goes beside it as `<stem>.proposed.json`, and `--adopt-proposal`
takes it, keeping the user's version as `<stem>.replaced.json`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from core.files import content_key, write_bytes_atomic, write_json_atomic

PROPOSED = "proposed"
REPLACED = "replaced"


def _record(path: Path) -> Path:
    return path.parent / ".keys" / (path.name + ".written")


def content_hash(data: Any) -> str:
    return content_key("editable", data)


def _beside(path: Path, tag: str) -> Path:
    """segments.json -> segments.<tag>.json; lines.ja.json -> lines.ja.<tag>.json"""
    return path.with_name(f"{path.stem}.{tag}{path.suffix}")


def proposal_path(path: Path) -> Path:
    return _beside(path, PROPOSED)


def replaced_path(path: Path) -> Path:
    return _beside(path, REPLACED)


def write_editable(path: Path, data: Any) -> None:
    """Write a file the user may edit, remembering what we wrote (so an edit can be told apart)."""
    write_json_atomic(path, data)
    write_bytes_atomic(_record(path), content_hash(data).encode())


def edited_by_user(path: Path) -> bool:
    """True when `path` holds something the job did not write: changed since, written by an earlier
    version (no record), or not even valid JSON (a half-done edit is still the user's)."""
    if not path.is_file():
        return False
    record = _record(path)
    if not record.is_file():
        return True
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    return content_hash(data) != record.read_text().strip()


def adopt_proposal(path: Path) -> Path:
    """Make `<stem>.proposed.json` the file: the user's version is kept as `<stem>.replaced.json` (a
    previous one there is replaced: it was already superseded once). Returns where the user's went."""
    proposal, kept = proposal_path(path), replaced_path(path)
    data = json.loads(proposal.read_text(encoding="utf-8"))
    if path.is_file():
        os.replace(path, kept)
    write_editable(path, data)
    proposal.unlink()
    _record(proposal).unlink(missing_ok=True)
    return kept


def drop_proposal(path: Path) -> None:
    """Remove a proposal that no longer applies (upstream returned to what the user's file was made for)."""
    proposal_path(path).unlink(missing_ok=True)
    _record(proposal_path(path)).unlink(missing_ok=True)
