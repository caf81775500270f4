"""The ten dubbing languages and the names each engine uses for them."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import ConfigError


@dataclass(frozen=True)
class Language:
    code: str  # ISO 639-1, what users type: "ja"
    iso639_2: str  # container language tag (ISO 639-2/T, what players show): "jpn", "zho", "deu"
    name: str  # English name: DashScope `language_type`, Qwen-MT `target_lang`, qwen-tts `language`
    whisper: str  # faster-whisper language code

    @property
    def track_title(self) -> str:
        return f"{self.name} (AI dub)"


LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in (
        Language("zh", "zho", "Chinese", "zh"),
        Language("en", "eng", "English", "en"),
        Language("de", "deu", "German", "de"),
        Language("it", "ita", "Italian", "it"),
        Language("pt", "por", "Portuguese", "pt"),
        Language("es", "spa", "Spanish", "es"),
        Language("ja", "jpn", "Japanese", "ja"),
        Language("ko", "kor", "Korean", "ko"),
        Language("fr", "fra", "French", "fr"),
        Language("ru", "rus", "Russian", "ru"),
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


def parse_language_list(value: str | list[str]) -> list[Language]:
    """Parse "ja,en,ko" (or a list) into languages, keeping order and dropping duplicates."""
    items = value.split(",") if isinstance(value, str) else list(value)
    codes = [item.strip() for item in items if item.strip()]
    if not codes:
        raise ConfigError("no target language given; use --langs, e.g. --langs ja,en,ko")
    result: list[Language] = []
    for code in codes:
        lang = get_language(code)
        if lang not in result:
            result.append(lang)
    return result
