"""Cost estimate before spending: billed TTS characters and price per language, exact where the
translation is already known (cached) and estimated from the source text otherwise. Lines whose clip
is already cached cost nothing."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from prefect import task

from core.clip_cache import ClipCache
from core.config import DubConfig
from core.errors import ConfigError, DubError
from core.languages import Language, get_language
from core.progress import stage_logger
from models.billing import billed_characters, estimate_billed_characters
from models.registry import tts_engine
from tasks.media import STAGE
from tasks.segment import Line
from tasks.synthesize import job_voices
from tasks.translate import TranslationCache, cached_translations, glossary_of, translator_for, user_edits
from text.glossary import terms_for

if TYPE_CHECKING:
    from cloning.session import CloneSession


class BudgetExceededError(DubError):
    exit_code = 2


@dataclass
class LanguageEstimate:
    language: str
    model: str
    lines: int
    lines_to_synthesize: int
    characters: int
    exact: bool  # every uncached line's text was known (no expansion-factor guess)
    cost: float
    currency: str


def estimate_language(
    lines: list[Line],
    source: Language | None,
    target: Language,
    config: DubConfig,
    clone: CloneSession | None,
) -> LanguageEstimate:
    voices = job_voices(config, clone, require_key=False)
    engine = tts_engine(voices.synth.route)
    clips = ClipCache(config.cache_dir)
    mt_cache = TranslationCache(config.cache_dir)
    translator = None
    if source is None or source.code != target.code:
        translator = translator_for(config, require_key=False)
    characters, to_synthesize, exact = 0, 0, True
    texts: list[str | None] = [line.text for line in lines]
    if translator is not None:
        terms = terms_for(glossary_of(config), target.code)
        texts = cached_translations(lines, source, target, translator, mt_cache, terms)
    edits, _ = user_edits(config.out_dir / f"lines.{target.code}.json", lines)  # the run keeps these as typed
    texts = [edits.get(line.index, text) for line, text in zip(lines, texts, strict=True)]
    for line, text in zip(lines, texts, strict=True):
        if text is not None and clips.get(voices.key_for(line, target.code, text)) is not None:
            continue
        to_synthesize += 1
        if text is not None:
            characters += billed_characters(text)
        else:
            exact = False
            characters += estimate_billed_characters(line.text, source.code if source else "en", target.code)
    cost, currency = engine.cost(characters, config.region)
    return LanguageEstimate(
        language=target.code,
        model=str((voices.identity_of(lines[0]) if lines else voices.identity(None)).get("model", "")),
        lines=len(lines),
        lines_to_synthesize=to_synthesize,
        characters=characters,
        exact=exact,
        cost=round(cost, 6),
        currency=currency,
    )


@task(name="estimate-cost", **STAGE)
def estimate_cost(
    lines: list[Line], source_lang: str, config: DubConfig, clone: CloneSession | None
) -> list[LanguageEstimate]:
    try:
        source: Language | None = get_language(source_lang)
    except ConfigError:
        source = None
    estimates = [estimate_language(lines, source, get_language(code), config, clone) for code in config.langs]
    log = stage_logger()
    for e in estimates:
        log.info(
            "estimate lang=%s model=%s lines_to_synthesize=%d characters=%d%s cost=%.4f %s",
            e.language, e.model, e.lines_to_synthesize, e.characters, "" if e.exact else "~",
            e.cost, e.currency,
        )  # fmt: skip
    total = sum(e.cost for e in estimates)
    if config.budget is not None and total > config.budget:
        currency = estimates[0].currency if estimates else ""
        raise BudgetExceededError(
            f"estimated TTS cost {total:.4f} {currency} exceeds --budget {config.budget:g} {currency}; "
            "nothing was spent (see --dry-run for the breakdown)"
        )
    return estimates


def estimates_as_json(estimates: list[LanguageEstimate]) -> list[dict[str, Any]]:
    return [asdict(e) for e in estimates]


def format_estimates(estimates: list[LanguageEstimate]) -> str:
    rows = [f"{'language':<10}{'model':<30}{'lines':>7}{'to synth':>10}{'characters':>12}{'cost':>12}"]
    for e in estimates:
        chars = f"{e.characters}{'' if e.exact else '~'}"
        rows.append(
            f"{e.language:<10}{e.model:<30}{e.lines:>7}{e.lines_to_synthesize:>10}{chars:>12}"
            f"{e.cost:>8.4f} {e.currency}"
        )
    total = sum(e.cost for e in estimates)
    currency = estimates[0].currency if estimates else ""
    rows.append(f"{'total':<10}{'':<30}{'':>7}{'':>10}{sum(e.characters for e in estimates):>12}"
                f"{total:>8.4f} {currency}")  # fmt: skip
    rows.append("(~ = estimated from the source text; exact once translations are cached)")
    return "\n".join(rows)
