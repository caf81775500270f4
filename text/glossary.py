"""Glossary files: terms that must be translated a fixed way, per target language.

CSV: a header `source,target,language` (language = ISO 639-1 code of the target; a row without one
applies to every target), or JSON: `{"ja": {"lighthouse": "灯台"}, "*": {"Qwen": "Qwen"}}`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from core.errors import InputError
from core.languages import get_language

Glossary = dict[str, dict[str, str]]  # target code (or "*") -> {source term: target term}


def load_glossary(path: Path) -> Glossary:
    if not path.is_file():
        raise InputError(f"glossary file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read glossary {path.name} ({exc.__class__.__name__})") from None
    glossary: Glossary = {}
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"glossary {path.name} is not valid JSON (line {exc.lineno})") from None
        if not isinstance(data, dict):
            raise InputError(f"glossary {path.name}: expected an object of language -> {{source: target}}")
        for lang, terms in data.items():
            if not isinstance(terms, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and k.strip() and v.strip()
                for k, v in terms.items()
            ):
                raise InputError(f"glossary {path.name}: '{lang}' must map source terms to target terms")
            code = "*" if lang == "*" else get_language(lang).code
            glossary.setdefault(code, {}).update({k.strip(): v.strip() for k, v in terms.items()})
        return glossary
    rows = list(csv.DictReader(text.splitlines()))
    for n, row in enumerate(rows, start=2):
        source, target = (row.get("source") or "").strip(), (row.get("target") or "").strip()
        if not source or not target:
            raise InputError(
                f"glossary {path.name}: row {n} needs 'source' and 'target' (header: source,target,language)"
            )
        lang = (row.get("language") or "").strip()
        code = get_language(lang).code if lang else "*"
        glossary.setdefault(code, {})[source] = target
    return glossary


def terms_for(glossary: Glossary | None, target: str) -> dict[str, str]:
    if not glossary:
        return {}
    return {**glossary.get("*", {}), **glossary.get(target, {})}


def missing_terms(source_text: str, translation: str, terms: dict[str, str]) -> list[str]:
    """Glossary sources present in the line whose fixed translation is absent from the result."""
    low_source, low_translation = source_text.casefold(), translation.casefold()
    return [s for s, t in terms.items() if s.casefold() in low_source and t.casefold() not in low_translation]
