"""Every engine a job can use, one entry each: how to build it, its voices, its prices, whether it needs
the DashScope key, and the name it goes by in disclosures and reports.

The rest of the code asks an entry (`tts_engine(config.tts).needs_key`, `.price(...)`, `.label(...)`)
instead of comparing route strings, so adding an engine is one adapter module plus one `register_*` call.
An entry's `name` is what users type (`--tts NAME`, `--translator NAME`) and what the clip and
translation cache keys record as the "route" (the built-in names "api" and "local" are therefore part of
every existing cache key and must not change).

Adapters are imported inside the factories: `--help` and config validation stay instant.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

    from core.config import DubConfig
    from models.base import SpeechSynthesizer, Translator
    from models.shortener import Shortener


@dataclass(frozen=True)
class VoiceInfo:
    """A catalogue voice as listings and casting see it."""

    name: str
    sex: str  # "F", "M" or "" when unknown
    note: str = ""


@dataclass(frozen=True)
class CloneSpec:
    """How an engine speaks with a consented clone: `build(grant, reference_wav, reference_text, config,
    create, require_key)` returns the cloned voice's synthesizer; `engine` names it in disclosures."""

    engine: Callable[[DubConfig], str]
    build: Callable[..., SpeechSynthesizer]
    reports: str  # the report field that identifies the cloned voice: "voice_id" or "prompt_id"


@dataclass(frozen=True)
class TTSEngine:
    name: str  # --tts value; the clip cache key's "route"
    needs_key: bool  # the DashScope key must be in the environment (not for dry runs)
    default_voice: str
    build: Callable[[DubConfig, bool], SpeechSynthesizer]  # (config, require_key); loads no model
    voices: Callable[[DubConfig], Sequence[VoiceInfo]]  # the catalogue of the configured model
    resolve_voice: Callable[[DubConfig, str], str]  # canonical name, or ConfigError naming the choices
    model_name: Callable[[DubConfig], str]  # the model a report names
    label: Callable[[DubConfig], str]  # "Qwen TTS (DashScope qwen3-tts-flash-...)" for disclosures
    # cost of `characters` billed characters in a region -> (amount, currency); None: no per-use price
    price: Callable[[int, str], tuple[float, str]] | None = None
    # lines are synthesised in batches on a device (one task per language) rather than one task per line
    batched: bool = False
    clone: CloneSpec | None = None  # None: this engine cannot speak with a cloned voice
    check: Callable[[DubConfig], None] | None = None  # options only this engine understands

    def cost(self, characters: int, region: str) -> tuple[float, str]:
        return self.price(characters, region) if self.price is not None else (0.0, "")


@dataclass(frozen=True)
class TranslatorEngine:
    name: str  # --translator value; the translation cache key's "route"
    needs_key: bool
    build: Callable[[DubConfig, bool], Translator]  # (config, require_key); loads no model
    shortener: Callable[[DubConfig, bool], Shortener]  # rewrites a line shorter when its dub is too long
    model_name: Callable[[DubConfig], str]
    check: Callable[[DubConfig], None] | None = None  # validates the model id or folder; loads nothing


# The built-in engines' names: what users type and what existing cache keys record.
API = "api"
LOCAL = "local"

_TTS: dict[str, TTSEngine] = {}
_TRANSLATORS: dict[str, TranslatorEngine] = {}


def register_tts(engine: TTSEngine, *, replace: bool = False) -> TTSEngine:
    if engine.name in _TTS and not replace:
        raise ValueError(f"TTS engine {engine.name!r} is already registered")
    _TTS[engine.name] = engine
    return engine


def register_translator(engine: TranslatorEngine, *, replace: bool = False) -> TranslatorEngine:
    if engine.name in _TRANSLATORS and not replace:
        raise ValueError(f"translator {engine.name!r} is already registered")
    _TRANSLATORS[engine.name] = engine
    return engine


def unregister(name: str) -> None:
    """Remove an engine of either kind (tests that register a toy engine clean up with this)."""
    _TTS.pop(name, None)
    _TRANSLATORS.pop(name, None)


def tts_engine(name: str) -> TTSEngine:
    try:
        return _TTS[name]
    except KeyError:
        raise ConfigError(f"unknown TTS engine {name!r}; choose one of {', '.join(_TTS)}") from None


def translator_engine(name: str) -> TranslatorEngine:
    try:
        return _TRANSLATORS[name]
    except KeyError:
        raise ConfigError(f"unknown translator {name!r}; choose one of {', '.join(_TRANSLATORS)}") from None


def tts_names() -> list[str]:
    return list(_TTS)


def translator_names() -> list[str]:
    return list(_TRANSLATORS)


# -- DashScope Qwen TTS ----------------------------------------------------------------------------------


def _dashscope_tts(config: DubConfig, require_key: bool) -> SpeechSynthesizer:
    from core.retry import RetryPolicy
    from models.dashscope_tts import DashScopeTTS

    return DashScopeTTS(
        model=config.tts_model, voice=config.voice or "Cherry", region=config.region, stream=config.stream,
        instructions=config.instructions, rpm=config.tts_rpm, concurrency=config.concurrency,
        retry=RetryPolicy.of(config), require_key=require_key, route=API,
        journal=config.cache_dir / "journal",
    )  # fmt: skip


def _dashscope_voices(config: DubConfig) -> list[VoiceInfo]:
    from models.voices import voices_for

    return [VoiceInfo(v.name, v.sex, v.note) for v in voices_for(config.tts_model)]


def _dashscope_resolve(config: DubConfig, name: str) -> str:
    from models.voices import resolve_voice

    return resolve_voice(name, config.tts_model).name


def _dashscope_price(characters: int, region: str) -> tuple[float, str]:
    from models.billing import price

    return price(characters, region)


def _dashscope_check(config: DubConfig) -> None:
    from models.voices import INSTRUCT_MODELS

    if config.voice_design is not None:
        raise ConfigError("--voice-design needs the local route (--tts local)")
    if config.instructions and config.tts_model not in INSTRUCT_MODELS:
        raise ConfigError(
            "--instructions needs an instruct model "
            f"(--tts-model qwen3-tts-instruct-flash-2026-01-26), not {config.tts_model}"
        )


def _dashscope_clone(grant: Any, wav: Path, text: str | None, config: DubConfig, create: bool,
                     require_key: bool) -> SpeechSynthesizer:  # fmt: skip
    from cloning.voice import api_clone_synthesizer
    from core.retry import RetryPolicy

    return api_clone_synthesizer(
        grant, wav, text, config.cache_dir, region=config.region, reference_language=config.source_lang,
        stream=config.stream, concurrency=config.concurrency, retry=RetryPolicy.of(config),
        create=create, require_key=require_key, route=config.tts,
    )  # fmt: skip


def _dashscope_clone_engine(config: DubConfig) -> str:
    from models.dashscope_voice_clone import VC_MODEL

    return f"DashScope {VC_MODEL}"


register_tts(
    TTSEngine(
        name=API,
        needs_key=True,
        default_voice="Cherry",
        build=_dashscope_tts,
        voices=_dashscope_voices,
        resolve_voice=_dashscope_resolve,
        model_name=lambda config: config.tts_model,
        label=lambda config: config.tts_model,
        price=_dashscope_price,
        clone=CloneSpec(engine=_dashscope_clone_engine, build=_dashscope_clone, reports="voice_id"),
        check=_dashscope_check,
    )
)


# -- Qwen3-TTS through the open-source qwen-tts package ---------------------------------------------------


def _local_tts(config: DubConfig, require_key: bool) -> SpeechSynthesizer:
    from models.qwen_local_tts import QwenLocalTTS

    return QwenLocalTTS(
        mode="voice_design" if config.voice_design else "custom_voice",
        model=config.tts_local_model,
        size=config.tts_size,
        speaker=config.voice or "Vivian",
        instructions=config.instructions,
        description=config.voice_design,
        prompt_cache_dir=config.cache_dir / "voice_prompts",
        route=LOCAL,
    )


# The nine CustomVoice speakers as the model card describes them (every one speaks all ten languages).
_LOCAL_VOICES = (
    VoiceInfo("Vivian", "F", "Chinese, bright young female"),
    VoiceInfo("Serena", "F", "Chinese, warm gentle female"),
    VoiceInfo("Uncle_Fu", "M", "Chinese, seasoned male"),
    VoiceInfo("Dylan", "M", "Chinese, Beijing dialect male"),
    VoiceInfo("Eric", "M", "Chinese, Sichuan dialect male"),
    VoiceInfo("Ryan", "M", "English, dynamic male"),
    VoiceInfo("Aiden", "M", "English, sunny American male"),
    VoiceInfo("Ono_Anna", "F", "Japanese, playful female"),
    VoiceInfo("Sohee", "F", "Korean, warm female"),
)


def _local_resolve(config: DubConfig, name: str) -> str:
    from models.qwen_local_tts import resolve_speaker

    return resolve_speaker(name)


def _local_label(config: DubConfig) -> str:
    return f"qwen-tts {config.tts_local_model or config.tts_size}"


def _local_check(config: DubConfig) -> None:
    _local_tts(config, False)  # validates mode, size, speaker and model folder; loads nothing


def _local_clone(grant: Any, wav: Path, text: str | None, config: DubConfig, create: bool,
                 require_key: bool) -> SpeechSynthesizer:  # fmt: skip
    from cloning.voice import local_clone_synthesizer

    return local_clone_synthesizer(
        grant,
        wav,
        text,
        config.tts_local_model,
        config.cache_dir,
        size=config.tts_size,
        create=create,
        route=config.tts,
    )


register_tts(
    TTSEngine(
        name=LOCAL,
        needs_key=False,
        default_voice="Vivian",
        build=_local_tts,
        voices=lambda config: _LOCAL_VOICES,
        resolve_voice=_local_resolve,
        model_name=lambda config: config.tts_local_model or config.tts_size,
        label=_local_label,
        batched=True,
        clone=CloneSpec(
            engine=lambda config: "Qwen3-TTS Base, local", build=_local_clone, reports="prompt_id"
        ),
        check=_local_check,
    )
)


# -- translators -----------------------------------------------------------------------------------------


def _glossary_terms(config: DubConfig) -> dict[str, dict[str, str]] | None:
    from core.languages import LANGUAGES
    from text.glossary import load_glossary, terms_for

    if config.glossary is None:
        return None
    glossary = load_glossary(config.glossary)
    return {code: terms_for(glossary, code) for code in LANGUAGES}


def _qwen_mt(config: DubConfig, require_key: bool) -> Translator:
    from core.retry import RetryPolicy
    from models.qwen_mt import QwenMTTranslator

    return QwenMTTranslator(
        model=config.mt_model, region=config.region, rpm=config.mt_rpm, concurrency=config.concurrency,
        retry=RetryPolicy.of(config), require_key=require_key, terms=_glossary_terms(config),
        domain=config.mt_domain, route=API, journal=config.cache_dir / "journal",
    )  # fmt: skip


def _dashscope_shortener(config: DubConfig, require_key: bool) -> Shortener:
    from core.retry import RetryPolicy
    from models.shortener import DEFAULT_SHORTEN_MODEL, DashScopeShortener

    return DashScopeShortener(
        model=config.shorten_model or DEFAULT_SHORTEN_MODEL, region=config.region, rpm=config.mt_rpm,
        concurrency=config.concurrency, retry=RetryPolicy.of(config), require_key=require_key,
        journal=config.cache_dir / "journal",
    )  # fmt: skip


def _local_translator(config: DubConfig, require_key: bool) -> Translator:
    from models.local_translator import LocalLLMTranslator

    return LocalLLMTranslator(model=config.translator_model, route=LOCAL)


def _local_translator_check(config: DubConfig) -> None:
    _local_translator(config, False)  # validates the model id or folder; loads nothing


def _local_shortener(config: DubConfig, require_key: bool) -> Shortener:
    from models.shortener import LocalRetranslateShortener

    return LocalRetranslateShortener(_local_translator(config, False))


register_translator(
    TranslatorEngine(
        name=API,
        needs_key=True,
        build=_qwen_mt,
        shortener=_dashscope_shortener,
        model_name=lambda config: config.mt_model,
    )
)
register_translator(
    TranslatorEngine(
        name=LOCAL,
        needs_key=False,
        build=_local_translator,
        shortener=_local_shortener,
        model_name=lambda config: config.translator_model or "default local LLM",
        check=_local_translator_check,
    )
)
