"""DashScope system voices for the qwen3-tts-flash family, and which model snapshots offer each.

Source: Model Studio "qwen-tts" voice list (see shared docs qwen-reference.md, section 2). Every voice
speaks all ten languages; dialect voices speak their dialect when the text is Chinese. A 49th voice
("Ebona") appears only in community lists and is left out until an official source lists it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from core.errors import ConfigError

# Model families as they appear in the catalogue. A pinned snapshot belongs to one family.
INSTRUCT = "qwen3-tts-instruct-flash"
FLASH = "qwen3-tts-flash"  # the alias points at the 2025-11-27 snapshot
FLASH_0918 = "qwen3-tts-flash-2025-09-18"
LEGACY = "qwen-tts"

# Snapshot names -> the family whose voice list applies.
MODEL_FAMILY: dict[str, str] = {
    "qwen3-tts-flash": FLASH,
    "qwen3-tts-flash-2025-11-27": FLASH,
    "qwen3-tts-flash-2025-09-18": FLASH_0918,
    "qwen3-tts-instruct-flash": INSTRUCT,
    "qwen3-tts-instruct-flash-2026-01-26": INSTRUCT,
}
INSTRUCT_MODELS = frozenset(m for m, fam in MODEL_FAMILY.items() if fam == INSTRUCT)


@dataclass(frozen=True)
class Voice:
    name: str
    sex: str  # "F" or "M"
    note: str
    dialect: str | None  # Chinese dialect spoken for Chinese text, if any
    families: frozenset[str]


def _v(name: str, sex: str, note: str, keys: str, dialect: str | None = None) -> Voice:
    key_to_family = {"I": INSTRUCT, "F": FLASH, "9": FLASH_0918, "T": LEGACY}
    families = frozenset(key_to_family[k] for k in keys.split() if k in key_to_family)
    return Voice(name, sex, note, dialect, families)


SYSTEM_VOICES: tuple[Voice, ...] = (
    _v("Cherry", "F", "sunny, friendly", "I F 9 T"),
    _v("Serena", "F", "gentle", "I F T"),
    _v("Ethan", "M", "Mandarin, light northern accent", "I F 9 T"),
    _v("Chelsie", "F", "anime girl", "I F T"),
    _v("Momo", "F", "playful", "I F"),
    _v("Vivian", "F", "cute, feisty", "I F"),
    _v("Moon", "M", "cool", "I F"),
    _v("Maia", "F", "intellectual", "I F"),
    _v("Kai", "M", "soothing", "I F"),
    _v("Nofish", "M", "no retroflex", "I F 9"),
    _v("Bella", "F", "little girl", "I F"),
    _v("Eldric Sage", "M", "wise elder", "I F"),
    _v("Mia", "F", "docile", "I F"),
    _v("Mochi", "M", "precocious child", "I F"),
    _v("Bellona", "F", "epic narrator", "I F"),
    _v("Vincent", "M", "raspy", "I F"),
    _v("Bunny", "F", "cute girl", "I F"),
    _v("Neil", "M", "news anchor", "I F"),
    _v("Elias", "F", "lecturer", "I F 9"),
    _v("Arthur", "M", "old storyteller", "I F"),
    _v("Nini", "F", "sweet", "I F"),
    _v("Seren", "F", "sleep aid", "I F"),
    _v("Pip", "M", "naughty kid", "I F"),
    _v("Stella", "F", "magical girl", "I F"),
    _v("Jennifer", "F", "cinematic American English", "F 9"),
    _v("Ryan", "M", "dramatic", "F 9"),
    _v("Katerina", "F", "mature", "F 9"),
    _v("Aiden", "M", "American young man", "F"),
    _v("Bodega", "M", "Spanish", "F"),
    _v("Sonrisa", "F", "Latin American", "F"),
    _v("Alek", "M", "Russian", "F"),
    _v("Dolce", "M", "Italian", "F"),
    _v("Sohee", "F", "Korean", "F"),
    _v("Ono Anna", "F", "Japanese", "F"),
    _v("Lenn", "M", "German", "F"),
    _v("Emilien", "M", "French", "F"),
    _v("Andre", "M", "magnetic", "F"),
    _v("Radio Gol", "M", "football commentator", "F"),
    _v("Jada", "F", "Shanghainese", "F 9", dialect="Wu (Shanghainese)"),
    _v("Dylan", "M", "Beijing", "F 9", dialect="Beijing"),
    _v("Li", "M", "Nanjing", "F 9", dialect="Nanjing"),
    _v("Marcus", "M", "Shaanxi", "F 9", dialect="Shaanxi"),
    _v("Roy", "M", "Minnan (Hokkien)", "F 9", dialect="Minnan (Hokkien)"),
    _v("Peter", "M", "Tianjin", "F 9", dialect="Tianjin"),
    _v("Sunny", "F", "Sichuan", "F 9", dialect="Sichuan"),
    _v("Eric", "M", "Sichuan (Chengdu)", "F 9", dialect="Sichuan (Chengdu)"),
    _v("Rocky", "M", "Cantonese", "F 9", dialect="Cantonese"),
    _v("Kiki", "F", "Cantonese", "F 9", dialect="Cantonese"),
)
VOICES_BY_NAME: dict[str, Voice] = {v.name: v for v in SYSTEM_VOICES}
DEFAULT_VOICE = "Cherry"


def model_family(model: str) -> str:
    try:
        return MODEL_FAMILY[model]
    except KeyError:
        known = ", ".join(sorted(MODEL_FAMILY))
        raise ConfigError(f"unknown DashScope TTS model {model!r}; known: {known}") from None


def resolve_voice(name: str, model: str) -> Voice:
    """The catalogue voice called `name` (case-insensitive), checked against what `model` offers."""
    family = model_family(model)
    lookup = {v.name.lower(): v for v in SYSTEM_VOICES}
    voice = lookup.get(name.strip().lower())
    offered = [v.name for v in SYSTEM_VOICES if family in v.families]
    if voice is None:
        close = difflib.get_close_matches(name.strip(), offered, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see --list-voices"
        raise ConfigError(f"unknown voice {name!r} for {model}{hint}")
    if family not in voice.families:
        raise ConfigError(f"voice {voice.name!r} is not offered by {model}; see --list-voices")
    return voice


def voices_for(model: str) -> list[Voice]:
    family = model_family(model)
    return [v for v in SYSTEM_VOICES if family in v.families]
