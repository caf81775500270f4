"""Per-line work: synthesise the line, run the closed loop when its clip is over the speed-up cap
(shorter translation, new clip: bounded attempts, the best version kept and reported), and fit the
clip to its slot (trim, pitch-kept stretch, fades).

Every line that needs new audio is one Prefect task run, `tts-<lang>-<index>` (named, not tagged: a
tagged task run leases a concurrency slot from the server first): the UI shows the work line by line,
a Dask task runner spreads lines over its workers, and a line is fitted as soon as its clip exists (no
language-wide barrier between synthesis, shortening and fitting). Lines whose clip is already cached
are finished inline by the language's `lines-<lang>` task: a task run per cached line would cost more
than the work (a few ms of orchestration for file lookups that take about a millisecond).
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import soundfile as sf
from prefect import task

from audio.fit import fit_clip_to_slot, trim_silence
from core.clip_cache import ClipCache
from core.config import DubConfig
from core.errors import UpstreamError
from core.files import atomic_path, content_key, is_fresh, mark_fresh, read_json, write_json_atomic
from core.languages import Language, get_language
from core.progress import NullProgress, StageProgress, stage_logger
from models.registry import translator_engine
from models.shortener import Shortener
from tasks.media import STAGE
from tasks.synthesize import ClipRecord, job_voices, synthesize_lines
from tasks.translate import TranslatedLine, TranslationCache, lines_to_json, shorten_key, with_budget
from text.speech_rate import spoken_length

if TYPE_CHECKING:
    from cloning.session import CloneSession

FIT_VERSION = "fit-v1"


# -- the shortening loop: a line over the speed-up cap gets a shorter translation and a new clip ---------

MAX_ATTEMPTS = 2  # each attempt is a paid translation + synthesis; two rarely leave a line unfitted
AIM = 0.95  # aim a little under the limit: speech rate varies within a voice


@dataclass
class ShortenReport:
    over_cap: int = 0  # lines whose first clip needed more than the cap
    shortened: int = 0  # of those, lines given a shorter text
    fitted: int = 0  # of those, lines that fit after shortening
    still_over: int = 0  # lines left over the cap (fitting falls back to the documented last resort)
    attempts: int = 0
    resynthesized: int = 0  # lines synthesised more than once (paid twice or more)


def spoken_seconds(path: str) -> float:
    audio, rate = sf.read(path, dtype="float32")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    return trim_silence(audio, rate).size / rate


def make_shortener(config: DubConfig, require_key: bool = True) -> Shortener:
    """The translator engine's shortener (models/registry.py)."""
    return translator_engine(config.translator).shortener(config, require_key)


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
            key = shorten_key(shortener.identity(), target.code, line.source, best_line.text, budget)
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
            if attempt == 1:
                report.resynthesized += 1
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


# -- fitting ----------------------------------------------------------------------------------------------


@dataclass
class FittedClip:
    """A line's clip fitted to its slot: mono float32 WAV at the clip's rate, placed at the line start."""

    path: str
    rate: int
    speed: float  # >1: sped up
    truncated_s: float  # cut at the slot end (0 when it fit)
    source_duration: float  # trimmed clip before stretching


@dataclass
class LineOutcome:
    line: TranslatedLine  # the text finally spoken (shortened when the loop replaced it)
    clip: ClipRecord
    fit: FittedClip
    shorten: ShortenReport = field(default_factory=ShortenReport)
    billed_characters: float = 0.0  # new synthesis only (0 for a cached clip)
    requests: float = 0.0
    attempts: float = 0.0


def fit_line(line: TranslatedLine, clip: ClipRecord, max_speedup: float, folder: Path) -> FittedClip:
    """Fit the clip to the line's slot, cached beside the clip links by (clip, slot, cap)."""
    out = folder / f"{line.index:04d}.wav"
    record = out.with_suffix(".json")
    key = content_key(FIT_VERSION, clip.audio_id, round(line.slot_s, 4), max_speedup)
    if is_fresh(out, key) and record.is_file():
        return FittedClip(**read_json(record))
    audio, rate = sf.read(clip.path, dtype="float32")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    fit = fit_clip_to_slot(audio, rate, line.start, line.slot_end, max_speedup)
    with atomic_path(out) as tmp:
        sf.write(str(tmp), fit.audio, rate, subtype="FLOAT", format="WAV")
    fitted = FittedClip(str(out), int(rate), fit.speed, fit.truncated_s, fit.source_duration)
    write_json_atomic(record, asdict(fitted))
    mark_fresh(out, key)
    return fitted


class LineWorker:
    """What the lines of one language share in a process: synthesizer, shortener and caches."""

    def __init__(
        self, lang_code: str, source_lang: str, config: DubConfig, clone: CloneSession | None, clips_dir: Path
    ) -> None:
        from core.errors import ConfigError

        self.target = get_language(lang_code)
        try:
            self.source: Language | None = get_language(source_lang)
        except ConfigError:
            self.source = None
        self.config = config
        self.clips_dir = clips_dir
        self.voices = job_voices(config, clone)
        self.shortener = make_shortener(config) if config.shorten else None
        self.clip_cache = ClipCache(config.cache_dir)
        self.text_cache = TranslationCache(config.cache_dir)

    def is_cached(self, line: TranslatedLine) -> bool:
        return self.clip_cache.get(self.voices.key(line, self.target.code)) is not None

    def _synthesize(self, line: TranslatedLine, folder: Path) -> tuple[ClipRecord, dict[str, float]]:
        records, totals = synthesize_lines(
            [line], self.target, self.voices, self.clip_cache, folder, 1, self.config.region,
            batch_size=1, quiet=True,
        )  # fmt: skip
        return records[0], totals

    def run(self, line: TranslatedLine) -> LineOutcome:
        clip, totals = self._synthesize(line, self.clips_dir)
        report = ShortenReport()
        if self.shortener is not None:
            # candidates get their own link folder: the line's main link keeps its first clip until the
            # best version is chosen (a worse candidate must not replace a better clip)
            def synthesize_one(candidate: TranslatedLine) -> ClipRecord:
                return self._synthesize(candidate, self.clips_dir / f"shortened-{candidate.shortened}")[0]

            lines, clips, report = shorten_overlong(
                [line], [clip], self.source, self.target, self.shortener, synthesize_one, self.text_cache,
                self.config.max_speedup,
            )  # fmt: skip
            line, clip = lines[0], clips[0]
        fit = fit_line(line, clip, self.config.max_speedup, self.clips_dir / "fitted")
        return LineOutcome(
            line, clip, fit, report,
            billed_characters=totals["billed_characters"], requests=totals["requests"],
            attempts=totals["attempts"],
        )  # fmt: skip


_WORKERS: dict[tuple[str, str, str, str], LineWorker] = {}
_WORKERS_LOCK = threading.Lock()


def line_worker(
    lang_code: str, source_lang: str, config: DubConfig, clone: CloneSession | None, clips_dir: Path
) -> LineWorker:
    """One worker per (job configuration, language) per process: a Dask worker or the flow's threads
    build the synthesizer (and load a local model) once, not once per line."""
    key = (config.model_dump_json(), lang_code, source_lang, str(clips_dir))
    with _WORKERS_LOCK:
        worker = _WORKERS.get(key)
        if worker is None:
            if len(_WORKERS) >= 32:  # a long-lived served process: do not keep every past job
                _WORKERS.clear()
            worker = _WORKERS[key] = LineWorker(lang_code, source_lang, config, clone, clips_dir)
        return worker


@task(name="tts", task_run_name="tts-{lang_code}-{index:04d}", **STAGE)
def dub_line(
    lang_code: str,
    index: int,
    source_lang: str,
    line: TranslatedLine,
    config: DubConfig,
    clone: CloneSession | None,
    clips_dir: Path,
) -> LineOutcome:
    """One line: synthesis, shortening when over the cap, fitting. `index` names the task run."""
    return line_worker(lang_code, source_lang, config, clone, clips_dir).run(line)


@dataclass
class LanguageLines:
    lines: list[TranslatedLine]
    clips: list[ClipRecord]
    fits: list[FittedClip]
    synthesis: dict[str, float]  # billed_characters, requests, attempts, new, cached
    shorten: ShortenReport


@task(name="lines", task_run_name="lines-{lang_code}", **STAGE)
def finish_lines(
    lang_code: str,
    source_lang: str,
    lines: list[TranslatedLine],
    done: list[LineOutcome],
    config: DubConfig,
    clone: CloneSession | None,
    clips_dir: Path,
    manifest: Path,
    lines_json: Path,
) -> LanguageLines:
    """All lines of a language: `done` holds what the per-line tasks returned; the other lines (cached
    clips) are finished here. Writes the clip manifest and, when the loop shortened lines, the new
    texts to lines.<lang>.json."""
    worker = line_worker(lang_code, source_lang, config, clone, clips_dir)
    by_index = {o.line.index: o for o in done}
    todo = len(lines) - len(by_index)
    progress = StageProgress(f"lines-{lang_code}", todo, unit="lines") if todo else NullProgress()
    outcomes = []
    for line in lines:
        outcome = by_index.get(line.index)
        if outcome is None:
            outcome = worker.run(line)
            progress.advance()
        outcomes.append(outcome)
    report = ShortenReport()
    for o in outcomes:
        for name in ("over_cap", "shortened", "fitted", "still_over", "attempts", "resynthesized"):
            setattr(report, name, getattr(report, name) + getattr(o.shorten, name))
    synthesis = {
        "billed_characters": sum(o.billed_characters for o in outcomes),
        "requests": sum(o.requests for o in outcomes),
        "attempts": sum(o.attempts for o in outcomes),
        "new_lines": float(len(done)),
        "cached_lines": float(len(lines) - len(done)),
        "rewritten_to_fit": float(sum(ln.rewritten_to_fit for ln in lines)),
        # clips kept although the local length guard flagged them (clips.<lang>.json names them)
        "guard_flagged": float(sum(bool(o.clip.guard) for o in outcomes)),
        # lines synthesised more than once in this run, over the lines synthesised (goal <= 5 %)
        "resynthesized_share": round(report.resynthesized / len(done), 4) if done else 0.0,
    }
    result = LanguageLines(
        [o.line for o in outcomes], [o.clip for o in outcomes], [o.fit for o in outcomes], synthesis, report
    )
    write_json_atomic(manifest, worker.voices.manifest(lang_code, result.lines, result.clips))
    if report.shortened:
        write_json_atomic(lines_json, lines_to_json(worker.target, source_lang, result.lines))
    stage_logger().info(
        "lines lang=%s lines=%d new=%d billed_characters=%d over_cap=%d shortened=%d fitted=%d still_over=%d "
        "resynthesized=%d",
        lang_code, len(lines), len(done), int(synthesis["billed_characters"]), report.over_cap,
        report.shortened, report.fitted, report.still_over, report.resynthesized,
    )  # fmt: skip
    return result
