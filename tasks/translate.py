"""Translation stage: segments -> lines.<lang>.json, one cached translation per line."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prefect import task

from models.base import Translator
from models.errors import ConfigError, NotImplementedRouteError, UpstreamError
from models.languages import Language, get_language
from models.retry import RetryPolicy
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

    @property
    def slot_end(self) -> float:
        return self.end + self.pause_after


def make_translator(
    route: str,
    model: str,
    region: str,
    rpm: int,
    concurrency: int,
    retry: RetryPolicy,
    require_key: bool = True,
) -> Translator:
    if route == "api":
        from models.qwen_mt import QwenMTTranslator

        return QwenMTTranslator(
            model=model, region=region, rpm=rpm, concurrency=concurrency, retry=retry, require_key=require_key
        )
    if route == "local":
        raise NotImplementedRouteError(
            "--translator local is not available yet; use --translator api (Qwen-MT)"
        )
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
) -> tuple[list[TranslatedLine], dict[str, int]]:
    """Translate every line (cached per line). Source == target copies the text (no call)."""
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

    result = map_lines(lines, one, workers, on_done=progress.advance)
    return result, stats


def lines_to_json(lang: Language, source: str, lines: list[TranslatedLine]) -> dict[str, Any]:
    return {"language": lang.code, "source_language": source, "lines": [asdict(ln) for ln in lines]}


@task(name="translate", task_run_name="translate-{lang_code}", **STAGE)
def translate(
    lang_code: str,
    source_lang: str,
    lines: list[Line],
    route: str,
    model: str,
    region: str,
    rpm: int,
    concurrency: int,
    retry_base_delay_s: float,
    cache_dir: Path,
    out_json: Path,
) -> list[TranslatedLine]:
    target = get_language(lang_code)
    try:
        source: Language | None = get_language(source_lang)
    except ConfigError:
        source = None  # a detected language outside the ten: let the engine auto-detect
    translator = None
    if source is None or source.code != target.code:
        translator = make_translator(
            route, model, region, rpm, concurrency, RetryPolicy(base_delay_s=retry_base_delay_s)
        )
    translated, stats = translate_lines(
        lines, source, target, translator, TranslationCache(cache_dir), concurrency
    )
    write_json_atomic(out_json, lines_to_json(target, source_lang, translated))
    stage_logger().info(
        "translated lang=%s lines=%d calls=%d cached=%d copied=%d",
        target.code, len(translated), stats["calls"], stats["cached"], stats["copied"],
    )  # fmt: skip
    return translated
