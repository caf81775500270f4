"""How long a text takes to say, per language: the length budget of a dubbing line.

Speaking rates in syllables per second from Pellegrino, Coupé & Marsico (2011), "A cross-language
perspective on speech information rate", Language 87(3): Japanese 7.84, Spanish 7.82, French 7.18,
Italian 6.99, English 6.19, German 5.97, Mandarin 5.18. Korean, Portuguese and Russian are not in that
study; we use 6.6, 6.9 and 6.0 (between their typological neighbours). We count *characters* rather
than syllables because that is what a translator can be asked to respect and what TTS services bill;
the conversion uses typical characters per syllable of running text (spaces and punctuation
included): Latin-script languages ~2.4 (English 2.35), Russian 2.3, Japanese ~0.95 (kana are morae,
kanji carry ~1.7), Chinese 1.0 (one hanzi per syllable), Korean ~1.3 (one hangul block per syllable,
plus spaces). Calibrated on TTS voices these give ~14.5 chars/s for English, ~7.5 for Japanese and ~5.2
for Chinese, which is how fast Qwen TTS voices read at their natural pace.
"""

from __future__ import annotations

SYLLABLES_PER_SECOND: dict[str, float] = {
    "ja": 7.84, "es": 7.82, "fr": 7.18, "it": 6.99, "en": 6.19, "de": 5.97, "zh": 5.18,
    "ko": 6.6, "pt": 6.9, "ru": 6.0,
}  # fmt: skip
CHARACTERS_PER_SYLLABLE: dict[str, float] = {
    "en": 2.35, "de": 2.4, "fr": 2.3, "es": 2.2, "it": 2.2, "pt": 2.3, "ru": 2.3,
    "ja": 0.95, "zh": 1.0, "ko": 1.3,
}  # fmt: skip


def characters_per_second(lang: str) -> float:
    return SYLLABLES_PER_SECOND.get(lang, 6.0) * CHARACTERS_PER_SYLLABLE.get(lang, 2.3)


def spoken_length(text: str) -> int:
    """Characters that take time to say: everything but repeated whitespace."""
    return len(" ".join(text.split()))


def estimate_seconds(text: str, lang: str) -> float:
    return spoken_length(text) / characters_per_second(lang)


def character_budget(seconds: float, lang: str) -> int:
    """The most characters that fit `seconds` at the language's natural pace (at least one word's worth)."""
    return max(4, int(seconds * characters_per_second(lang)))
