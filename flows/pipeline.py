"""The job inside the `dub` flow run, stage by stage (Prefect tasks, files between them):

probe -> extract audio -> separate -> transcribe -> segment -> [each language its own pipeline, in
parallel: translate-<lang> -> per line needing audio tts-<lang>-<index> (synthesize, shorten if over the
cap, fit to the slot; a device engine synthesises the language in batches first) -> lines-<lang> ->
assemble-<lang> (place, mix, subtitles)] -> remux -> report

A language starts synthesising as soon as it is translated: a slow language holds no other. The
pipelines run in threads of the flow run (each with a copy of the run's context, so their task runs
belong to this flow run and go to its task runner, Dask included); the first failure stops the others
before the flow fails.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from cloning.session import CloneSession
from core.config import DubConfig
from core.files import write_json_atomic
from core.job import JobPaths
from core.languages import get_language
from models.registry import tts_engine
from tasks.assemble import TrackResult, assemble, measure_source_loudness
from tasks.cast import CAST_FILE
from tasks.cast import cast as cast_speakers
from tasks.diarize import diarize, diarizer_for
from tasks.estimate import LanguageEstimate, estimate_cost, estimates_as_json
from tasks.line import LanguageLines, dub_line, finish_lines, line_worker
from tasks.media import DubTrack, extract, probe, remux_task, working_layout
from tasks.report import build_report, disclosure, write_report
from tasks.segment import Line, import_plan, segment, usable_words
from tasks.separate import separate
from tasks.synthesize import check_line_voices, synthesize
from tasks.transcribe import transcribe
from tasks.translate import TranslatedLine, translate
from tasks.verify import verify

T = TypeVar("T")


@dataclass(frozen=True)
class DubResult:
    video: Path | None  # None for a dry run
    report: Path
    subtitles: dict[str, Path]
    estimates: list[LanguageEstimate]


class StageClock:
    """Wall seconds per stage. Per-language stages overlap, so for them the report keeps the longest
    language's time (the stage's share of the critical path), not the sum."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()

    @contextmanager
    def stage(self, name: str, per_language: bool = False) -> Iterator[None]:
        """Time a stage; `per_language`: one of several overlapping runs, of which the longest counts."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            took = time.perf_counter() - t0
            with self._lock:
                before = self.seconds.get(name, 0.0)
                self.seconds[name] = max(before, took) if per_language else before + took


def tag_flow_run(tags: list[str]) -> None:
    """Tag this flow run with its languages (`lang:ja`, ...), so the UI filters runs by language.

    Task runs are not tagged: in Prefect 3 every tagged task run first leases a slot of the tag's
    concurrency limit from the server, which stalled the per-line tasks in waves (2 s per 8 lines on the
    sample). Their names carry the language instead (`tts-ja-0042`, `translate-ja`)."""
    try:
        from prefect.client.orchestration import get_client
        from prefect.context import get_run_context

        run = get_run_context().flow_run  # type: ignore[union-attr]
        if run is None:
            return
        with get_client(sync_client=True) as client:
            client.update_flow_run(run.id, tags=sorted({*run.tags, *tags}))
    except Exception:  # noqa: BLE001 - a tag is a convenience; the run goes on without it
        return


class Stopped(Exception):
    """Another language failed: this one stops at its next stage boundary."""


def settle(futures: list[Any]) -> None:
    """After a failure: cancel the tasks that have not started and wait for the running ones to end, so
    the job fails as a whole (no line still writing, no task run still talking to the Prefect server
    while the process winds down)."""
    from concurrent.futures import CancelledError

    for fut in futures:
        wrapped = getattr(fut, "wrapped_future", None)
        if wrapped is not None:
            wrapped.cancel()  # concurrent.futures and dask futures alike; a running one is not interrupted
    for fut in futures:
        try:
            fut.wait()
        except (Exception, CancelledError):  # noqa: BLE001 - their errors are not the one being reported
            continue


def in_parallel(keys: Sequence[str], work: Callable[[str, threading.Event], T]) -> dict[str, T]:
    """`work(key, stop)` for every key at once, each in a thread carrying a copy of this flow run's
    context. The first failure sets `stop` for the others and is raised once all have ended."""
    stop = threading.Event()
    results: dict[str, T] = {}
    with ThreadPoolExecutor(max_workers=max(1, len(keys)), thread_name_prefix="language") as pool:
        running: dict[Future[T], str] = {
            pool.submit(contextvars.copy_context().run, work, key, stop): key for key in keys
        }
        pending = set(running)
        first: BaseException | None = None
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for fut in done:
                exc = fut.exception()
                if exc is None:
                    results[running[fut]] = fut.result()
                elif first is None or isinstance(first, Stopped):
                    first = exc if first is None or not isinstance(exc, Stopped) else first
                    stop.set()
        if first is not None:
            raise first
    return {key: results[key] for key in keys}


@dataclass
class LanguageOutcome:
    finished: LanguageLines
    track: TrackResult


class LanguagePipeline:
    """One language from translation to its mixed track, started as soon as the plan exists."""

    def __init__(
        self,
        config: DubConfig,
        clone: CloneSession | None,
        job: JobPaths,
        source_lang: str,
        lines: list[Line],
        stems: Any,
        layout: tuple[int, int],
        duration: float,
        source_lufs: float,
        clock: StageClock,
        speaker_labels: dict[str, str] | None = None,
    ) -> None:
        """`speaker_labels`: speaker -> the name subtitles show (--subtitle-speakers); None: no labels."""
        self.config, self.clone, self.job = config, clone, job
        self.speaker_labels = speaker_labels
        self.source_lang, self.lines, self.stems = source_lang, lines, stems
        self.rate, self.channels = layout
        self.duration, self.source_lufs, self.clock = duration, source_lufs, clock

    def __call__(self, code: str, stop: threading.Event) -> LanguageOutcome:
        config, job = self.config, self.job
        with self.clock.stage("translate", per_language=True):
            translated = translate.submit(
                code, self.source_lang, self.lines, config, job.lines(code)
            ).result()
        if stop.is_set():
            raise Stopped(code)
        with self.clock.stage("synthesize", per_language=True):
            finished = self.synthesize(code, translated, stop)
        if stop.is_set():
            raise Stopped(code)
        with self.clock.stage("assemble", per_language=True):
            track = assemble.submit(
                code, finished.lines, finished.clips, self.stems.background, self.stems.key, self.rate,
                self.channels, self.duration, self.source_lufs, config.max_speedup, config.duck_db,
                config.audio_codec, job.dub_audio(code), job.stem(code) if config.split_outputs else None,
                job.srt(code), job.vtt(code), finished.fits, self.labels(finished.lines),
            ).result()  # fmt: skip
        return LanguageOutcome(finished, track)

    def labels(self, lines: list[TranslatedLine]) -> list[str] | None:
        if self.speaker_labels is None:
            return None
        return [self.speaker_labels.get(ln.speaker, ln.speaker) for ln in lines]

    def synthesize(self, code: str, lines: list[TranslatedLine], stop: threading.Event) -> LanguageLines:
        """A `tts-<lang>-<index>` task run per line that needs new audio (synthesis, shortening, fitting;
        spread over the task runner's workers, Dask included), then `lines-<lang>` (cached lines are
        finished there). A device engine first synthesises the language in batches (`synthesize-<lang>`):
        lines of similar length and one voice share a generate call, which per-line tasks could not do."""
        from prefect.futures import as_completed

        from core.progress import StageProgress
        from tasks.synthesize import audit_clone_use

        config, job, clone = self.config, self.job, self.clone
        futures: list[Any] = []
        if tts_engine(config.tts).batched:  # a clone speaks through its engine's clone synthesizer
            synthesize.submit(
                code, lines, config, clone, job.clips_dir(code), job.clips_manifest(code)
            ).result()
        else:
            worker = line_worker(code, self.source_lang, config, clone, job.clips_dir(code))
            todo = [ln for ln in lines if not worker.is_cached(ln)]
            audit_clone_use(clone, config, code, lines)
            futures = [
                dub_line.submit(code, ln.index, self.source_lang, ln, config, clone, job.clips_dir(code))
                for ln in todo
            ]
        progress = StageProgress(f"synthesize-{code}", len(lines), unit="lines")
        progress.set(len(lines) - len(futures))  # cached lines count as done
        try:
            for fut in as_completed(futures):
                fut.result()  # the first failed line fails the job (its error names the line)
                progress.advance()
                if stop.is_set():
                    raise Stopped(code)
        except BaseException:
            settle(futures)
            raise
        return finish_lines.submit(
            code, self.source_lang, lines, [f.result() for f in futures], config, clone, job.clips_dir(code),
            job.clips_manifest(code), job.lines(code),
        ).result()  # fmt: skip


def config_record(config: DubConfig) -> dict[str, Any]:
    """The job's options as JSON with absolute paths, so the studio can re-run it from anywhere."""
    record = config.model_dump(mode="json")
    for name in type(config).model_fields:
        value = getattr(config, name)
        if isinstance(value, Path):
            record[name] = str(value.resolve())
    return record


def run_job(config: DubConfig) -> DubResult:
    """The whole job, inside the `dub` flow run, after its checks."""
    job = JobPaths(config.out_dir, config.name, config.container)
    clock = StageClock()
    tag_flow_run([f"lang:{code}" for code in config.langs])
    clone = CloneSession.open(config)  # before any model or API call (consent; deployments skip the CLI)
    write_json_atomic(job.run_config, config_record(config))  # what the review studio re-dubs with

    with clock.stage("probe"):
        info, video_digest = probe(config.video)
    rate, channels = working_layout(info)
    with clock.stage("extract"):
        audio, analysis, audio_key = extract(info, video_digest, job.audio, job.analysis)
        source_lufs = measure_source_loudness(audio)
    with clock.stage("separate"):
        stems = separate(
            audio, audio_key, config.separator, vocals_path=job.vocals, background_path=job.background,
            model=config.demucs_model, model_dir=config.demucs_dir, device=config.device,
            shifts=config.demucs_shifts, overlap=config.demucs_overlap, chunk_seconds=config.demucs_chunk_s,
        )  # fmt: skip
    # without separation the 16 kHz mono analysis copy is what recognition and onset detection read
    speech = stems.vocals if stems.background is not None else analysis
    asr_model, language_probability = "", 1.0
    if config.segments is not None or config.subtitles is not None:
        with clock.stage("segment"):
            kind, plan_file = (
                ("segments", config.segments) if config.segments else ("subtitles", config.subtitles)
            )
            assert plan_file is not None
            source_lang, lines, _plan_key = import_plan(
                plan_file, kind, config.source_lang, info.duration, job.segments
            )
    else:
        with clock.stage("transcribe"):
            transcript, transcript_key = transcribe(
                speech, stems.key, config.asr_model, config.source_lang, job.transcript
            )
            asr_model, language_probability = transcript.model, transcript.language_probability
        diarizer = diarizer_for(config)
        turns, turns_key = None, ""
        if diarizer is not None:
            with clock.stage("diarize"):
                turns, turns_key = diarize(
                    speech, stems.key, usable_words(transcript), transcript_key, config.speaker_hints(),
                    job.work / "diarization.json", diarizer,
                )  # fmt: skip
        with clock.stage("segment"):
            source_lang, lines, _plan_key = segment(
                transcript, transcript_key, speech, job.segments, turns, turns_key, config.adopt_proposal
            )
    check_line_voices(config, [ln.voice for ln in lines if ln.voice])  # an edited plan, before paying
    with clock.stage("cast"):  # every speaker's voice: --cast, cast.json edits, registry, --voice, auto
        casting = cast_speakers(config, lines, speech, job.root / CAST_FILE)
    given = config  # the options as typed, for the report
    config = casting.apply(config)  # config.cast names every speaker's voice: what every JobVoices reads

    clone_synths = None
    if clone is not None:  # each cloned speaker's reference matched to its consent's voice print, then voices
        with clock.stage("clone"):
            clone.prepare(config, stems.vocals if stems.background is not None else audio, lines, job)
            live = not config.dry_run
            clone_synths = clone.synthesizers(config, job, require_key=live, create=live)
    with clock.stage("estimate"):
        estimates = estimate_cost(lines, source_lang, config, clone)
    if config.dry_run:
        write_json_atomic(job.estimate, {"languages": estimates_as_json(estimates), "lines": len(lines)})
        return DubResult(video=None, report=job.estimate, subtitles={}, estimates=estimates)

    langs: list[str] = list(config.langs)
    pipeline = LanguagePipeline(
        config,
        clone,
        job,
        source_lang,
        lines,
        stems,
        (rate, channels),
        info.duration,
        source_lufs,
        clock,
        casting.names() if config.subtitle_speakers else None,
    )
    with clock.stage("languages"):
        outcomes = in_parallel(langs, pipeline)
    finished = {code: outcomes[code].finished for code in langs}
    tracks = [outcomes[code].track for code in langs]
    verified: dict[str, Any] = {}
    if config.verify:
        with clock.stage("verify"):
            verifying = {
                t.language: verify.submit(
                    t.language,
                    Path(t.audio_file),
                    finished[t.language].lines,
                    t.timings,
                    config.asr_model,
                    job.verify(t.language),
                    config.verify_threshold,
                )  # fmt: skip
                for t in tracks
            }
            verified = {code: fut.result().summary() for code, fut in verifying.items()}
    engine = tts_engine(config.tts)
    with clock.stage("remux"):
        dub_tracks = [DubTrack(get_language(t.language), Path(t.audio_file), Path(t.srt)) for t in tracks]
        notice = disclosure(config, clone)
        final = remux_task(info, video_digest, dub_tracks, job.final, notice)
        singles = {}
        if config.split_outputs:  # one video per language: the original audio and that language's dub
            for track in dub_tracks:
                code = track.language.code
                singles[code] = str(remux_task(info, video_digest, [track], job.single(code), notice))

    billed = int(sum(f.synthesis.get("billed_characters", 0) for f in finished.values()))
    report = build_report(
        job={
            "video": config.video.name,
            "sha256": video_digest,
            "languages": langs,
            "tts": engine.name,
            "tts_model": engine.model_name(config),
            "voice": given.voice,
            **({"cast": dict(given.cast)} if given.cast else {}),
            "translator": config.translator,
            "mt_model": config.mt_model,
            "asr_model": asr_model or None,
            "separator": config.separator,
            "region": config.region,
            **({"clone": clone.report(config, clone_synths)} if clone is not None else {}),
        },
        source={
            "duration": info.duration,
            "language": source_lang,
            "language_probability": language_probability,
            "integrated_lufs": round(source_lufs, 2),
            "lines": len(lines),
        },
        tracks=tracks,
        synthesis={code: {**finished[code].synthesis, **asdict(finished[code].shorten)} for code in langs},
        verification=verified,
        translation={
            code: {"unkept_lines": [ln.index for ln in finished[code].lines if ln.unkept]} for code in langs
        },
        outputs={
            "video": str(final),
            "subtitles": {code: {"srt": str(job.srt(code)), "vtt": str(job.vtt(code))} for code in langs},
            "segments": str(job.segments),
            **({"per_language": singles, "stems": {c: str(job.stem(c)) for c in langs}} if singles else {}),
        },
        stage_seconds=clock.seconds,
        cost=(billed, *engine.cost(billed, config.region)),
        disclosure=notice,
        max_speedup=config.max_speedup,
    )
    report["speakers"] = casting.report()
    write_report(report, job.report)
    return DubResult(
        video=final, report=job.report, subtitles={code: job.srt(code) for code in langs}, estimates=estimates
    )
