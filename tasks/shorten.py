"""Closed loop after synthesis: a line whose clip would need more speed-up than the cap gets a shorter
translation (bounded attempts) and is synthesised again; the best version is kept and reported."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import soundfile as sf
from prefect import task

from audio.fit import trim_silence
from core.clip_cache import ClipCache
from core.errors import ConfigError, UpstreamError
from core.files import content_key, write_json_atomic
from core.languages import Language, get_language
from core.progress import stage_logger
from core.retry import RetryPolicy
from models.shortener import DEFAULT_SHORTEN_MODEL, DashScopeShortener, LocalRetranslateShortener, Shortener
from tasks.media import STAGE
from tasks.synthesize import ClipRecord, make_synthesizer, synthesize_lines
from tasks.translate import TranslatedLine, TranslationCache, lines_to_json, translator_for, with_budget
from text.speech_rate import spoken_length

MAX_ATTEMPTS = 2  # each attempt is a paid translation + synthesis; two rarely leave a line unfitted
AIM = 0.95  # aim a little under the limit: speech rate varies within a voice


@dataclass
class ShortenReport:
    over_cap: int = 0  # lines whose first clip needed more than the cap
    shortened: int = 0  # of those, lines given a shorter text
    fitted: int = 0  # of those, lines that fit after shortening
    still_over: int = 0  # lines left over the cap (fitting falls back to the documented last resort)
    attempts: int = 0


def spoken_seconds(path: str) -> float:
    audio, rate = sf.read(path, dtype="float32")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    return trim_silence(audio, rate).size / rate


def make_shortener(config: Any, require_key: bool = True) -> Shortener:
    if config.translator == "local":
        return LocalRetranslateShortener(translator_for(config, require_key=False))
    return DashScopeShortener(
        model=config.shorten_model or DEFAULT_SHORTEN_MODEL,
        region=config.region,
        rpm=config.mt_rpm,
        concurrency=config.concurrency,
        retry=RetryPolicy.of(config),
        require_key=require_key,
    )


def shorten_overlong(
    lines: list[TranslatedLine],
    clips: list[ClipRecord],
    source: Language | None,
    target: Language,
    shortener: Shortener,
    synthesize_one: Any,
    cache: TranslationCache,
    max_speedup: float,
) -> tuple[list[TranslatedLine], list[ClipRecord], ShortenReport]:
    """`synthesize_one(line) -> ClipRecord` synthesises (through the clip cache) a line's current text."""
    report = ShortenReport()
    out_lines, out_clips = list(lines), list(clips)
    for i, (line, clip) in enumerate(zip(lines, clips, strict=True)):
        limit = line.slot_s * max_speedup
        spoken = spoken_seconds(clip.path)
        if spoken <= limit + 1e-3:
            continue
        report.over_cap += 1
        if line.edited or line.source == line.text:
            report.still_over += 1  # the user's own words (or the source itself) are not rewritten
            continue
        best_line, best_clip, best_spoken = line, clip, spoken
        for attempt in range(1, MAX_ATTEMPTS + 1):
            budget = int(spoken_length(best_line.text) * limit * AIM / best_spoken)
            if budget < 4:
                break
            key = content_key(
                "shorten-v1", shortener.identity(), target.code, line.source, best_line.text, budget
            )
            text = cache.get(key)
            if text is None:
                try:
                    text = shortener.shorten(line.source, best_line.text, source, target, budget)
                except UpstreamError as exc:
                    raise UpstreamError(
                        f"shortening of line {line.index} ({target.code}) failed: {exc.detail}",
                        code=exc.code,
                        status=exc.status,
                    ) from None
                cache.put(key, text)
            report.attempts += 1
            if spoken_length(text) >= spoken_length(best_line.text):
                break  # no progress: keep what we have
            candidate = with_budget(dataclasses.replace(line, text=text, shortened=attempt), target.code)
            candidate_clip = synthesize_one(candidate)
            candidate_spoken = spoken_seconds(candidate_clip.path)
            if candidate_spoken < best_spoken:
                best_line, best_clip, best_spoken = candidate, candidate_clip, candidate_spoken
            if best_spoken <= limit + 1e-3:
                break
        if best_line is not line:
            report.shortened += 1
        if best_spoken <= limit + 1e-3:
            report.fitted += 1
        else:
            report.still_over += 1
        out_lines[i], out_clips[i] = best_line, best_clip
    return out_lines, out_clips, report


@task(name="shorten", task_run_name="shorten-{lang_code}", **STAGE)
def shorten(
    lang_code: str,
    source_lang: str,
    lines: list[TranslatedLine],
    clips: list[ClipRecord],
    config: Any,
    clips_dir: Path,
    lines_json: Path,
) -> tuple[list[TranslatedLine], list[ClipRecord], ShortenReport]:
    target = get_language(lang_code)
    try:
        source: Language | None = get_language(source_lang)
    except ConfigError:
        source = None
    synth = make_synthesizer(config)
    clip_cache = ClipCache(config.cache_dir)

    def synthesize_one(line: TranslatedLine) -> ClipRecord:
        # candidates get their own link folder: the line's main link keeps pointing at its first clip
        # until the best version is chosen (a worse candidate must not replace a better clip)
        folder = clips_dir / f"shortened-{line.shortened}"
        records, _ = synthesize_lines(
            [line], target, synth, clip_cache, folder, 1, config.region, batch_size=1
        )
        return records[0]

    shortener = make_shortener(config) if config.shorten else None
    if shortener is None:
        return lines, clips, ShortenReport()
    new_lines, new_clips, report = shorten_overlong(
        lines, clips, source, target, shortener, synthesize_one, TranslationCache(config.cache_dir),
        config.max_speedup,
    )  # fmt: skip
    if report.shortened:
        write_json_atomic(lines_json, lines_to_json(target, source_lang, new_lines))
    stage_logger().info(
        "shorten lang=%s over_cap=%d shortened=%d fitted=%d still_over=%d attempts=%d",
        lang_code, report.over_cap, report.shortened, report.fitted, report.still_over, report.attempts,
    )  # fmt: skip
    return new_lines, new_clips, report
