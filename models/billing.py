"""Characters as DashScope bills them for Qwen TTS, and the published prices.

Model Studio bills qwen3-tts-flash by characters: each Chinese character counts as 2, every other
character (letters, digits, punctuation, spaces) as 1. The docs do not say how kana and hangul count;
we count them as 2 as well, so estimates err on the side of over-estimating a budget. The service's own
`usage.characters` is recorded per clip and is what the report totals.
"""

from __future__ import annotations

import unicodedata

# USD per 10,000 characters, International; CNY per 10,000, Mainland (Model Studio price pages).
PRICE_PER_10K_CHARS: dict[str, tuple[float, str]] = {
    "intl": (0.10, "USD"),
    "cn": (0.80, "CNY"),
}


def _is_wide(ch: str) -> bool:
    if unicodedata.east_asian_width(ch) not in ("W", "F"):
        return False
    name = unicodedata.name(ch, "")
    return name.startswith(("CJK", "HIRAGANA", "KATAKANA", "HANGUL"))


def billed_characters(text: str) -> int:
    return sum(2 if _is_wide(ch) else 1 for ch in text)


def price(characters: int, region: str) -> tuple[float, str]:
    per_10k, currency = PRICE_PER_10K_CHARS[region]
    return characters / 10_000 * per_10k, currency
