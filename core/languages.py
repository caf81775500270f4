"""The ten dubbing languages, the names each engine uses for them, and the facts about their writing
that more than one module needs (wide characters, number separators)."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from core.errors import ConfigError

# Code points of CJK ideographs, kana and Hangul syllables: one spoken syllable per character, billed
# double by DashScope, written without spaces. CJK punctuation (U+3000-303F), full-width forms and Hangul
# jamo are not in it. The local TTS length guard reads this (it sets max_new_tokens, so a change here
# changes synthesised clips): keep the ranges as they are.
WIDE_RANGES: tuple[tuple[int, int], ...] = (
    (0x3040, 0x30FF),  # hiragana, katakana
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xAC00, 0xD7AF),  # Hangul syllables
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x2FA1F),  # CJK extensions B+
)


def is_wide(ch: str) -> bool:
    """A CJK ideograph, kana or Hangul syllable (see WIDE_RANGES)."""
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in WIDE_RANGES)


def is_double_width(ch: str) -> bool:
    """Two columns on screen: a wide character, CJK punctuation, a full-width form, most emoji (Unicode
    East Asian Width W or F). What subtitle line widths and joins without a space go by."""
    return is_wide(ch) or unicodedata.east_asian_width(ch) in ("W", "F")


@dataclass(frozen=True)
class Language:
    code: str  # ISO 639-1, what users type: "ja"
    iso639_2: str  # container language tag (ISO 639-2/T, what players show): "jpn", "zho", "deu"
    name: str  # English name: DashScope `language_type`, Qwen-MT `target_lang`, qwen-tts `language`
    whisper: str  # faster-whisper language code
    decimal_mark: str = "."  # "3.5" / "3,5"
    # characters that group thousands as the language writes them: "1,000", "1.000", "1 000" (French
    # also writes "1.000"; Russian groups with spaces only)
    group_marks: str = ","

    @property
    def track_title(self) -> str:
        return f"{self.name} (AI dub)"

    is_wide = staticmethod(is_wide)
    is_double_width = staticmethod(is_double_width)


_SPACES = " \u00a0\u202f"  # space, no-break space, narrow no-break space: "2 000 euros", "1 500 рублей"

LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in (
        Language("zh", "zho", "Chinese", "zh"),
        Language("en", "eng", "English", "en"),
        Language("de", "deu", "German", "de", decimal_mark=",", group_marks="."),
        Language("it", "ita", "Italian", "it", decimal_mark=",", group_marks="."),
        Language("pt", "por", "Portuguese", "pt", decimal_mark=",", group_marks="."),
        Language("es", "spa", "Spanish", "es", decimal_mark=",", group_marks="."),
        Language("ja", "jpn", "Japanese", "ja"),
        Language("ko", "kor", "Korean", "ko"),
        Language("fr", "fra", "French", "fr", decimal_mark=",", group_marks=_SPACES + "."),
        Language("ru", "rus", "Russian", "ru", decimal_mark=",", group_marks=_SPACES),
    )
}


def get_language(code: str) -> Language:
    key = code.strip().lower()
    if key in LANGUAGES:
        return LANGUAGES[key]
    by_name = {lang.name.lower(): lang for lang in LANGUAGES.values()}
    if key in by_name:
        return by_name[key]
    supported = ",".join(LANGUAGES)
    raise ConfigError(f"unknown language code {code.strip()!r}; supported: {supported}")
