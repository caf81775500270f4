"""Characters as DashScope bills them for Qwen TTS, and the published prices.

Model Studio bills qwen3-tts-flash by characters: each Chinese character counts as 2, every other
character (letters, digits, punctuation, spaces) as 1. The docs do not say how kana and hangul count;
we count them as 2 as well, so estimates err on the side of over-estimating a budget (the characters
counted 2 are core.languages' wide characters: CJK ideographs, kana, Hangul syllables). The service's own
`usage.characters` is recorded per clip and is what the report totals.
"""

from __future__ import annotations

from core.languages import is_wide

# USD per 10,000 characters, International; CNY per 10,000, Mainland (Model Studio price pages).
PRICE_PER_10K_CHARS: dict[str, tuple[float, str]] = {
    "intl": (0.10, "USD"),
    "cn": (0.80, "CNY"),
}


def billed_characters(text: str) -> int:
    return sum(2 if is_wide(ch) else 1 for ch in text)


def price(characters: int, region: str) -> tuple[float, str]:
    per_10k, currency = PRICE_PER_10K_CHARS[region]
    return characters / 10_000 * per_10k, currency


# Rough length of a translation relative to its English source, in BILLED characters (CJK counted 2),
# for cost estimates before anything is translated. Derived from common localisation expansion
# factors (German/French/Spanish text runs 15-30 % longer than English; Japanese/Chinese/Korean use
# far fewer characters, each billed double). Deliberately on the high side: an estimate should not
# under-promise a budget. Replaced by exact counts once a line's translation is known (cached).
BILLED_EXPANSION_FROM_ENGLISH: dict[str, float] = {
    "en": 1.0,
    "de": 1.3,
    "fr": 1.25,
    "es": 1.25,
    "it": 1.2,
    "pt": 1.2,
    "ru": 1.15,
    "ja": 1.2,  # ~0.55 characters per English character, each billed 2
    "zh": 0.8,  # ~0.35-0.4 characters per English character, billed 2
    "ko": 1.0,  # ~0.5 hangul (billed 2) plus spaces
}


def estimate_billed_characters(source_text: str, source_lang: str, target_lang: str) -> int:
    """Estimated billed characters of the translation of `source_text` (exact when no translation)."""
    if source_lang == target_lang:
        return billed_characters(source_text)
    src = BILLED_EXPANSION_FROM_ENGLISH.get(source_lang, 1.0)
    tgt = BILLED_EXPANSION_FROM_ENGLISH.get(target_lang, 1.3)
    return int(round(billed_characters(source_text) / src * tgt))
