"""The `dub` flow: one video in, one video out with a dubbed audio track and subtitles per language.

    python -m flows.dub VIDEO --langs ja,en,ko        (see flows/cli.py for every option)

Stages (Prefect tasks, files between them):
probe -> extract audio -> separate -> transcribe -> segment -> [per language, in parallel]
translate-<lang> -> [per line needing audio] tts-<lang>-<index> (synthesize, shorten if over the cap,
fit to the slot) -> lines-<lang> -> assemble-<lang> (place, mix, subtitles) -> remux -> report
"""

if __name__ == "__main__":  # the CLI parses (and answers --help) before Prefect is imported
    from flows.cli import main

    raise SystemExit(main())

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prefect import flow

from core.checks import preflight
from core.config import DubConfig
from core.files import write_json_atomic
from core.job import JobPaths
from core.languages import get_language
from flows.runners import make_task_runner
from tasks.assemble import assemble, measure_source_loudness
from tasks.estimate import LanguageEstimate, estimate_cost, estimates_as_json
from tasks.line import LanguageLines, dub_line, finish_lines
from tasks.media import DubTrack, extract, probe, remux_task, working_layout
from tasks.report import DISCLOSURE, build_report, write_report
from tasks.segment import import_plan, segment
from tasks.separate import separate
from tasks.synthesize import audit_clone_use, synthesize
from tasks.transcribe import transcribe
from tasks.translate import translate
from tasks.verify import verify


@dataclass(frozen=True)
class DubResult:
    video: Path | None  # None for a dry run
    report: Path
    subtitles: dict[str, Path]
    estimates: list[LanguageEstimate]


class StageClock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0


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


def check_clone_consent(config: DubConfig) -> Any:
    if config.clone is None:
        return None
    from cloning.voice import grant_for_config

    return grant_for_config(config)


def prepare_clone(config: DubConfig, stems: Any, audio: Path, lines: list[Any], job: JobPaths) -> Any:
    """The reference recording (the user's, or 3-15 s of the cleanest speech in the vocals) and the
    cloned voice, created once (enrollment or clone prompt) and reused for every line and language."""
    from cloning.reference import prepare_reference, select_reference
    from tasks.synthesize import make_synthesizer

    if config.clone_ref is not None:
        prepare_reference(config.clone_ref, job.clone_reference, config.clone_ref_text)
    elif not job.clone_reference.is_file():
        select_reference(
            stems.vocals if stems.background is not None else audio, lines, out_wav=job.clone_reference
        )
    return make_synthesizer(config, require_key=not config.dry_run)


def clone_report_for(grant: Any, config: DubConfig, synth: Any) -> dict[str, Any]:
    from cloning.voice import clone_report

    return clone_report(grant, config.tts, synth)


def synthesize_all(
    langs: Sequence[str],
    source_lang: str,
    translated: Mapping[Any, list[Any]],
    config: DubConfig,
    job: JobPaths,
) -> dict[str, LanguageLines]:
    """Every line of every language: a `tts-<lang>-<index>` task run per line that needs new audio
    (synthesis, shortening, fitting; spread over the task runner's workers, Dask included), then one
    `lines-<lang>` task per language as soon as its lines are done (cached lines are finished there).
    The local route first synthesises each language in batches on the device (`synthesize-<lang>`):
    lines of similar length share a generate call, which per-line tasks could not do."""
    from prefect.futures import as_completed

    from core.progress import StageProgress
    from tasks.line import line_worker

    futures: dict[str, list[Any]] = {}
    for code in langs:
        lines = translated[code]
        if config.tts == "local":
            synthesize.submit(code, lines, config, job.clips_dir(code), job.clips_manifest(code)).result()
            futures[code] = []
            continue
        if config.clone:
            audit_clone_use(config, code, len(lines))
        worker = line_worker(code, source_lang, config, job.clips_dir(code))
        futures[code] = [
            dub_line.submit(code, ln.index, source_lang, ln, config, job.clips_dir(code))
            for ln in lines
            if not worker.is_cached(ln)
        ]
    remaining = {code: len(futs) for code, futs in futures.items()}
    owner = {fut: code for code, futs in futures.items() for fut in futs}
    # per language, in the UI and the log, as lines finish (cached lines count as done)
    progress = {
        code: StageProgress(f"synthesize-{code}", len(translated[code]), unit="lines") for code in futures
    }
    for code, n in remaining.items():
        progress[code].set(len(translated[code]) - n)

    def finish(code: str) -> Any:
        return finish_lines.submit(
            code, source_lang, translated[code], [f.result() for f in futures[code]], config,
            job.clips_dir(code), job.clips_manifest(code), job.lines(code),
        )  # fmt: skip

    finishing = {code: finish(code) for code, n in remaining.items() if n == 0}
    try:
        for fut in as_completed(list(owner)):
            code = owner[fut]
            fut.result()  # the first failed line fails the job (its error names the line)
            remaining[code] -= 1
            progress[code].advance()
            if remaining[code] == 0:
                finishing[code] = finish(code)
    except BaseException:
        settle([*owner, *finishing.values()])
        raise
    return {code: finishing[code].result() for code in langs}


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


@flow(
    name="dub",
    flow_run_name="dub-{config.video.stem}",
    task_runner=make_task_runner(),  # type: ignore[arg-type]  # a concurrent-future runner
    log_prints=False,
)
def dub(config: DubConfig) -> DubResult:
    """Dub a video into the requested languages with Qwen TTS."""
    preflight(config)  # the CLI's checks, for runs started from the UI or a deployment as well
    return run_job(config)


def run_job(config: DubConfig) -> DubResult:
    """The whole job, inside the `dub` flow run, after its checks."""
    job = JobPaths(config.out_dir, config.name, config.container)
    clock = StageClock()
    tag_flow_run([f"lang:{code}" for code in config.langs])
    grant = check_clone_consent(config)  # before any model or API call (deployments skip the CLI)

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
        with clock.stage("segment"):
            source_lang, lines, _plan_key = segment(transcript, transcript_key, speech, job.segments)

    clone_synth = None
    if grant is not None:
        with clock.stage("clone"):
            clone_synth = prepare_clone(config, stems, audio, lines, job)
    with clock.stage("estimate"):
        estimates = estimate_cost(lines, source_lang, config)
    if config.dry_run:
        write_json_atomic(job.estimate, {"languages": estimates_as_json(estimates), "lines": len(lines)})
        return DubResult(video=None, report=job.estimate, subtitles={}, estimates=estimates)

    langs = config.langs
    with clock.stage("translate"):
        translating = {
            code: translate.submit(code, source_lang, lines, config, job.lines(code)) for code in langs
        }
        translated = {code: fut.result() for code, fut in translating.items()}
    with clock.stage("synthesize"):  # per line: synthesis, the shortening loop, fitting
        finished = synthesize_all(langs, source_lang, translated, config, job)
    with clock.stage("assemble"):
        assembling = {
            code: assemble.submit(
                code,
                finished[code].lines,
                finished[code].clips,
                stems.background,
                stems.key,
                rate,
                channels,
                info.duration,
                source_lufs,
                config.max_speedup,
                config.duck_db,
                config.audio_codec,
                job.dub_audio(code),
                job.stem(code) if config.split_outputs else None,
                job.srt(code),
                job.vtt(code),
                finished[code].fits,
            )  # fmt: skip
            for code in langs
        }
        tracks = [assembling[code].result() for code in langs]
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
    with clock.stage("remux"):
        dub_tracks = [DubTrack(get_language(t.language), Path(t.audio_file), Path(t.srt)) for t in tracks]
        engine = (
            config.tts_model
            if config.tts == "api"
            else f"qwen-tts {config.tts_local_model or config.tts_size}"
        )
        voice = config.voice if not config.voice_design else "designed voice"
        voice_note = f" Voice: {voice} ({engine})."
        if grant is not None:
            from cloning.voice import clone_disclosure

            voice_note = clone_disclosure(grant, config.tts)
        final = remux_task(info, video_digest, dub_tracks, job.final, DISCLOSURE + voice_note)
        singles = {}
        if config.split_outputs:  # one video per language: the original audio and that language's dub
            for track in dub_tracks:
                code = track.language.code
                singles[code] = str(
                    remux_task(info, video_digest, [track], job.single(code), DISCLOSURE + voice_note)
                )

    report = build_report(
        job={
            "video": config.video.name,
            "sha256": video_digest,
            "languages": langs,
            "tts": config.tts,
            "tts_model": config.tts_model
            if config.tts == "api"
            else config.tts_local_model or config.tts_size,
            "voice": config.voice,
            "translator": config.translator,
            "mt_model": config.mt_model,
            "asr_model": asr_model or None,
            "separator": config.separator,
            "region": config.region,
            **({"clone": clone_report_for(grant, config, clone_synth)} if grant is not None else {}),
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
        region=config.region,
        max_speedup=config.max_speedup,
    )
    write_report(report, job.report)
    return DubResult(
        video=final, report=job.report, subtitles={code: job.srt(code) for code in langs}, estimates=estimates
    )
