"""Translation stage: segments -> lines.<lang>.json, one cached translation per line."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prefect import task

from models.base import Translator
from models.errors import ConfigError, UpstreamError
from models.glossary import Glossary, load_glossary, missing_terms, terms_for
from models.languages import LANGUAGES, Language, get_language
from models.retry import RetryPolicy
from models.speech_rate import character_budget, estimate_seconds
from tasks.files import content_key, read_json, write_json_atomic
from tasks.media import STAGE
from tasks.parallel import map_lines
from tasks.progress import StageProgress, stage_logger
from tasks.segment import Line


@dataclass
class TranslatedLine:
    index: int
    start: float
    end: float
    pause_after: float
    source: str
    text: str
    budget_chars: int = 0  # what fits the slot at the language's natural pace (models/speech_rate.py)
    estimate_s: float = 0.0  # estimated spoken duration of `text`
    edited: bool = False  # the user changed `text` in lines.<lang>.json: kept as is, never shortened
    shortened: int = 0  # re-translations done to fit the slot (closed loop after synthesis)

    @property
    def slot_end(self) -> float:
        return self.end + self.pause_after

    @property
    def slot_s(self) -> float:
        return self.slot_end - self.start


def with_budget(line: TranslatedLine, target: str) -> TranslatedLine:
    line.budget_chars = character_budget(line.slot_s, target)
    line.estimate_s = round(estimate_seconds(line.text, target), 3)
    return line


def text_hash(text: str) -> str:
    return content_key("line-text", text)[:16]


def user_edits(path: Path, lines: list[Line]) -> dict[int, str]:
    """Lines whose translation the user changed in an existing lines.<lang>.json: same source text as
    the plan, and a text that differs from what we wrote (recorded as `auto_hash`)."""
    if not path.is_file():
        return {}
    try:
        data = read_json(path)
        entries = {int(e["index"]): e for e in data.get("lines", [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError(f"{path.name} is not valid (fix it or delete it to translate again)") from None
    edits: dict[int, str] = {}
    for line in lines:
        entry = entries.get(line.index)
        if not entry or entry.get("source") != line.text or not isinstance(entry.get("text"), str):
            continue
        text = " ".join(entry["text"].split())
        if not text:
            raise ConfigError(f"{path.name}: line {line.index} has an empty translation")
        if entry.get("edited") or text_hash(text) != entry.get("auto_hash"):
            edits[line.index] = text
    return edits


def make_translator(
    route: str,
    model: str,
    region: str,
    rpm: int,
    concurrency: int,
    retry: RetryPolicy,
    require_key: bool = True,
    local_model: str | None = None,
    glossary: Glossary | None = None,
) -> Translator:
    if route == "api":
        from models.qwen_mt import QwenMTTranslator

        terms = {code: terms_for(glossary, code) for code in LANGUAGES} if glossary else None
        return QwenMTTranslator(
            model=model, region=region, rpm=rpm, concurrency=concurrency, retry=retry,
            require_key=require_key, terms=terms,
        )  # fmt: skip
    if route == "local":
        from models.local_translator import LocalLLMTranslator

        return LocalLLMTranslator(model=local_model)
    raise ConfigError(f"unknown translator route {route!r}")


def translation_key(identity: dict[str, Any], source: Language | None, target: Language, text: str) -> str:
    return content_key("mt-v1", identity, source.code if source else "auto", target.code, text)


class TranslationCache:
    """One small JSON file per (translator identity, languages, text) under <cache>/mt/."""

    def __init__(self, root: Path) -> None:
        self.root = root / "mt"

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        p = self.path(key)
        try:
            value = read_json(p)["text"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return value if isinstance(value, str) and value.strip() else None

    def put(self, key: str, text: str) -> None:
        write_json_atomic(self.path(key), {"text": text})


def translate_lines(
    lines: list[Line],
    source: Language | None,
    target: Language,
    translator: Translator | None,
    cache: TranslationCache,
    workers: int,
    terms: dict[str, str] | None = None,
) -> tuple[list[TranslatedLine], dict[str, int]]:
    """Translate every line (cached per line). Source == target copies the text (no call). `terms`
    (glossary source -> target) go to the engine: Qwen-MT as translation_options.terms (set on the
    translator), the local LLM in its prompt."""
    stats = {"calls": 0, "cached": 0, "copied": 0}
    stats_lock = threading.Lock()

    def count(what: str) -> None:
        with stats_lock:
            stats[what] += 1

    progress = StageProgress(f"translate-{target.code}", len(lines), unit="lines")

    def one(line: Line) -> TranslatedLine:
        if source is not None and source.code == target.code:
            count("copied")
            text = line.text
        else:
            assert translator is not None
            key = translation_key(translator.identity(), source, target, line.text)
            cached = cache.get(key)
            if cached is not None:
                count("cached")
                text = cached
            else:
                try:
                    text = translator.translate(line.text, source, target)
                except UpstreamError as exc:
                    raise UpstreamError(
                        f"translation of line {line.index} ({target.code}) failed: {exc.detail}",
                        code=exc.code,
                        status=exc.status,
                    ) from None
                count("calls")
                cache.put(key, text)
        return TranslatedLine(line.index, line.start, line.end, line.pause_after, line.text, text)

    if (
        translator is not None
        and hasattr(translator, "translate_batch")
        and not (source is not None and source.code == target.code)
    ):
        return _translate_batched(lines, source, target, translator, cache, progress, terms or {})
    result = map_lines(lines, one, workers, on_done=progress.advance)
    return result, stats


CONTEXT_BEFORE, CONTEXT_AFTER = 2, 1  # neighbouring lines shown to a local LLM (pronouns, register, terms)


def _translate_batched(
    lines: list[Line],
    source: Language | None,
    target: Language,
    translator: Any,
    cache: TranslationCache,
    progress: StageProgress,
    terms: dict[str, str],
) -> tuple[list[TranslatedLine], dict[str, int]]:
    """Local LLM route: every uncached line in batched generate calls, each with its neighbours as
    context (so the cache key includes the context: the same sentence elsewhere may translate
    differently)."""
    from models.local_translator import TranslationItem

    items = [
        TranslationItem(
            line.text,
            previous=[ln.text for ln in lines[max(0, i - CONTEXT_BEFORE) : i]],
            next=[ln.text for ln in lines[i + 1 : i + 1 + CONTEXT_AFTER]],
            max_chars=character_budget(line.pause_after + line.end - line.start, target.code),
            glossary=terms,
            index=line.index,
        )
        for i, line in enumerate(lines)
    ]
    identity = translator.identity()
    keys = [
        content_key("mt-v1", identity, source.code if source else "auto", target.code, item.key_fields())
        for item in items
    ]
    texts: list[str | None] = [cache.get(k) for k in keys]
    todo = [i for i, t in enumerate(texts) if t is None]
    progress.set(len(lines) - len(todo))
    if todo:
        try:
            results = translator.translate_batch([items[i] for i in todo], source, target)
        except UpstreamError as exc:
            raise UpstreamError(
                f"translation ({target.code}) failed: {exc.detail}", code=exc.code, status=exc.status
            ) from None
        for i, text in zip(todo, results, strict=True):
            cache.put(keys[i], text)
            texts[i] = text
    progress.set(len(lines))
    translated = [
        TranslatedLine(ln.index, ln.start, ln.end, ln.pause_after, ln.text, str(text))
        for ln, text in zip(lines, texts, strict=True)
    ]
    return translated, {"calls": len(todo), "cached": len(lines) - len(todo), "copied": 0}


def lines_to_json(lang: Language, source: str, lines: list[TranslatedLine]) -> dict[str, Any]:
    """The editable translation file: change a line's `text` and re-run; only that line is re-done."""
    return {
        "language": lang.code,
        "source_language": source,
        "lines": [{**asdict(ln), **({} if ln.edited else {"auto_hash": text_hash(ln.text)})} for ln in lines],
    }


def translator_for(config: Any, require_key: bool = True) -> Translator:
    return make_translator(
        config.translator,
        config.mt_model,
        config.region,
        config.mt_rpm,
        config.concurrency,
        RetryPolicy(base_delay_s=config.retry_base_delay_s),
        require_key=require_key,
        local_model=config.translator_model,
        glossary=glossary_of(config),
    )


def glossary_of(config: Any) -> Glossary | None:
    return load_glossary(config.glossary) if getattr(config, "glossary", None) else None


@task(name="translate", task_run_name="translate-{lang_code}", **STAGE)
def translate(
    lang_code: str, source_lang: str, lines: list[Line], config: Any, out_json: Path
) -> list[TranslatedLine]:
    target = get_language(lang_code)
    try:
        source: Language | None = get_language(source_lang)
    except ConfigError:
        source = None  # a detected language outside the ten: let the engine auto-detect
    translator = None
    if source is None or source.code != target.code:
        translator = translator_for(config)
    edits = user_edits(out_json, lines)
    todo = [ln for ln in lines if ln.index not in edits]
    terms = terms_for(glossary_of(config), target.code)
    translated, stats = translate_lines(
        todo, source, target, translator, TranslationCache(config.cache_dir), config.concurrency, terms
    )
    misses = [ln.index for ln in translated if missing_terms(ln.source, ln.text, terms)]
    if misses:
        stage_logger().warning(
            "glossary lang=%s lines_missing_terms=%d lines=%s", target.code, len(misses),
            ",".join(str(i) for i in misses[:20]),
        )  # fmt: skip
    by_index = {ln.index: ln for ln in translated}
    for line in lines:
        if line.index in edits:
            by_index[line.index] = TranslatedLine(
                line.index, line.start, line.end, line.pause_after, line.text, edits[line.index], edited=True
            )
    translated = [with_budget(by_index[ln.index], target.code) for ln in lines]
    stats["edited"] = len(edits)
    write_json_atomic(out_json, lines_to_json(target, source_lang, translated))
    stage_logger().info(
        "translated lang=%s lines=%d calls=%d cached=%d copied=%d edited=%d",
        target.code, len(translated), stats["calls"], stats["cached"], stats["copied"], stats["edited"],
    )  # fmt: skip
    return translated
