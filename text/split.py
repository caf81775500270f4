"""Split text that exceeds a per-request limit at the most natural boundary available."""

from __future__ import annotations

import re

from core.languages import is_double_width

# Boundaries from strongest to weakest. Each pattern matches the END of a piece (the boundary stays
# with the text before it, so the audio of the pieces concatenates in reading order).
_SENTENCE_END = re.compile(r"(?<=[.!?。！？…])[\"'”’」』)]*\s*")
_CLAUSE_END = re.compile(r"(?<=[,;:，；：、])\s*")
_SPACE = re.compile(r"\s+")


def _pieces(text: str, pattern: re.Pattern[str]) -> list[str]:
    parts, last = [], 0
    for m in pattern.finditer(text):
        if m.end() > last:
            parts.append(text[last : m.end()])
            last = m.end()
    if last < len(text):
        parts.append(text[last:])
    return [p for p in parts if p.strip()]


def split_text(text: str, limit: int) -> list[str]:
    """Pieces of at most `limit` characters, cut at sentence ends, then clause ends, then spaces, and
    only as a last resort inside a word. Never drops characters other than surrounding whitespace."""
    text = text.strip()
    if len(text) <= limit:
        return [text] if text else []
    for pattern in (_SENTENCE_END, _CLAUSE_END, _SPACE):
        parts = _pieces(text, pattern)
        if len(parts) > 1:
            return _pack([piece for part in parts for piece in split_text(part, limit)], limit)
    return [text[i : i + limit] for i in range(0, len(text), limit)]


def _pack(parts: list[str], limit: int) -> list[str]:
    """Greedily join consecutive pieces back together while they fit, so requests stay few."""
    packed: list[str] = []
    for part in parts:
        if packed and len(packed[-1]) + 1 + len(part) <= limit:
            sep = "" if packed[-1].endswith(" ") or _is_cjk_boundary(packed[-1], part) else " "
            packed[-1] = (packed[-1] + sep + part).strip()
        else:
            packed.append(part.strip())
    return packed


def _is_cjk_boundary(left: str, right: str) -> bool:
    return bool(left) and bool(right) and (is_double_width(left[-1]) or is_double_width(right[0]))
