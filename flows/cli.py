"""Command line: `python -m flows.dub VIDEO --langs ja,en,ko [options]`.

Parsing and --help import nothing heavy. Every user error ends as one `error: ...` line on stderr and
a non-zero exit, before any work starts when it can be known up front.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

from core.errors import ConfigError, DubError, InputError
from core.parallel import CANCELLED, Cancelled

EPILOG = """\
environment:
  DASHSCOPE_API_KEY            API key for the DashScope routes (never passed as a flag)
  DASHSCOPE_HTTP_BASE_URL      override the region's API host (e.g. a proxy)
  DASHSCOPE_COMPATIBLE_BASE_URL, DASHSCOPE_WEBSOCKET_BASE_URL   idem for the other endpoints
  QWENDUB_CACHE_DIR            clip/translation cache (default ~/.cache/qwen-dub)

example:
  python -m flows.dub media_samples/sample.mp4 --langs ja,en,ko --voice Cherry
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m flows.dub",
        description="Dub a video into one or more languages with Qwen TTS.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("video", nargs="?", type=Path, help="input video file")
    p.add_argument("--langs", help="target languages, comma-separated: zh,en,de,it,pt,es,ja,ko,fr,ru")
    p.add_argument("--out", type=Path, help="output folder (default: out/<video name>/)")
    p.add_argument(
        "--voice",
        help="TTS voice (default Cherry on the API, Vivian locally; see --list-voices [--tts local])",
    )
    p.add_argument(
        "--tts", choices=["api", "local"], default="api", help="TTS route (default api: DashScope)"
    )
    p.add_argument(
        "--translator",
        choices=["api", "local"],
        default="api",
        help="translation route (default api: Qwen-MT)",
    )
    p.add_argument(
        "--asr-model",
        default="auto",
        metavar="NAME_OR_DIR",
        help="faster-whisper model name or CTranslate2 directory (default: large-v3 on GPU, small on CPU)",
    )
    p.add_argument("--separator", choices=["htdemucs", "none"], default="htdemucs",
                   help="source separation (default htdemucs; none: dub over silence)")  # fmt: skip
    p.add_argument("--demucs-model", default="htdemucs", metavar="NAME_OR_DIR",
                   help="demucs model (htdemucs, htdemucs_ft, mdx_extra) or a model folder")  # fmt: skip
    p.add_argument("--demucs-repo", dest="demucs_dir", type=Path, metavar="DIR",
                   help="folder of local demucs models (<name>.th / <name>.yaml)")  # fmt: skip
    p.add_argument("--shifts", type=int, default=1, help="demucs random shifts (quality vs time; default 1)")
    p.add_argument("--overlap", type=float, default=0.25, help="demucs segment overlap (default 0.25)")
    p.add_argument("--separation-chunk", type=float, default=60.0, metavar="SECONDS",
                   help="separate in chunks of this length: bounded memory (default 60)")  # fmt: skip
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where models run")
    p.add_argument("--region", choices=["intl", "cn"], default="intl", help="DashScope region (default intl)")
    p.add_argument("--source-lang", help="language of the video (default: detected)")
    p.add_argument(
        "--segments", type=Path, metavar="FILE", help="start from this segments.json (skips recognition)"
    )
    p.add_argument(
        "--subtitles",
        type=Path,
        metavar="FILE",
        help="seed the line plan from an .srt/.vtt (skips recognition)",
    )
    p.add_argument(
        "--tts-model", default=None, help="DashScope TTS model snapshot (default qwen3-tts-flash-2025-11-27)"
    )
    p.add_argument("--mt-model", default=None, help="Qwen-MT model (default qwen-mt-flash)")
    p.add_argument(
        "--glossary",
        type=Path,
        metavar="FILE",
        help="terms translated a fixed way: CSV source,target,language or JSON",
    )
    p.add_argument(
        "--mt-domain",
        metavar="TEXT",
        help="Qwen-MT domain hint in English (translation_options.domains), e.g. "
        "'Cooking show, informal'; default: spoken dialogue translated for dubbing",
    )
    p.add_argument(
        "--translator-model",
        metavar="NAME_OR_DIR",
        help="local translator LLM: Hugging Face id or directory "
        "(default Qwen/Qwen2.5-7B-Instruct on GPU, Qwen/Qwen2.5-1.5B-Instruct on CPU)",
    )
    p.add_argument(
        "--tts-local-model",
        metavar="NAME_OR_DIR",
        help="local route: Qwen3-TTS checkpoint id or directory (default Qwen/Qwen3-TTS-12Hz-<size>-...)",
    )
    p.add_argument("--tts-size", choices=["1.7B", "0.6B"], default="1.7B", help="local route: model size")
    p.add_argument(
        "--voice-design",
        metavar="DESCRIPTION",
        help="local route: design the voice from a description (1.7B)",
    )
    p.add_argument(
        "--tts-batch", type=int, default=8, help="local route: lines per generate call (default 8)"
    )
    p.add_argument(
        "--clone", metavar="SPEAKER_ID", help="clone this speaker's voice (needs a consent record)"
    )
    p.add_argument("--consent-dir", type=Path, metavar="DIR", help="consent ledger (python -m cloning.cli)")
    p.add_argument("--clone-use", metavar="TEXT", help="the use this job makes of the voice, as consented")
    p.add_argument(
        "--clone-ref", type=Path, metavar="FILE", help="reference recording (default: from the vocals)"
    )
    p.add_argument("--clone-ref-text", metavar="TEXT", help="transcript of --clone-ref")
    p.add_argument("--stream", action="store_true", help="take TTS audio from the SSE stream (no result URL)")
    p.add_argument(
        "--rpm", type=int, default=180, help="TTS requests per minute (default 180, the flash limit)"
    )
    p.add_argument("--concurrency", type=int, default=8, help="parallel API requests (default 8)")
    p.add_argument(
        "--retries",
        type=int,
        default=6,
        metavar="N",
        help="attempts per API request on transient errors: 429, 5xx, timeouts (default 6)",
    )
    p.add_argument(
        "--max-speedup", type=float, default=1.25, help="cap on time-stretch speed-up (default 1.25)"
    )
    p.add_argument(
        "--no-shorten",
        action="store_true",
        help="do not re-translate lines whose dub needs more speed-up than --max-speedup",
    )
    p.add_argument("--shorten-model", help="DashScope chat model that shortens lines (default qwen-flash)")
    p.add_argument(
        "--audio-codec", choices=["aac", "opus"], default="aac", help="dub track codec (default aac)"
    )
    p.add_argument(
        "--duck", type=float, default=0.0, metavar="DB",
        help="lower the background by DB under dialogue (sidechain ducking; default 0: off)",
    )  # fmt: skip
    p.add_argument(
        "--split-outputs", action="store_true", help="also write one video per language and the dub WAV stems"
    )
    p.add_argument(
        "--container", choices=["mkv", "mp4"], default="mkv", help="output container (default mkv)"
    )
    p.add_argument("--cache-dir", type=Path, help="clip/translation cache (default ~/.cache/qwen-dub)")
    p.add_argument("--instructions", help="speaking direction (speed, emotion, tone) for instruct TTS models")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="transcribe and plan, then print the estimated characters and cost per language; no paid call",
    )
    p.add_argument(
        "--budget", type=float, help="refuse the job if the estimated TTS cost exceeds this amount"
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="re-transcribe each dub track with --asr-model and report WER (CER for zh/ja/ko) per line",
    )
    p.add_argument("--verify-threshold", type=float, default=0.3, help="flag lines above this error rate")
    p.add_argument("--list-voices", action="store_true", help="print the voice catalogue and exit")
    p.add_argument(
        "--task-runner",
        choices=["thread", "dask"],
        help="run per-language stages on threads (default) or on a Dask cluster (prefect-dask)",
    )
    p.add_argument(
        "--dask-address", metavar="tcp://HOST:8786", help="existing Dask scheduler (default: local)"
    )
    p.add_argument("--log-json", action="store_true", help="logs as JSON lines on stderr (job, stage, line)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def print_voices(model: str | None, route: str = "api") -> None:
    if route == "local":
        from models.qwen_local_tts import SPEAKERS

        notes = {
            "Vivian": "Chinese, bright young female", "Serena": "Chinese, warm gentle female",
            "Uncle_Fu": "Chinese, seasoned male", "Dylan": "Chinese, Beijing dialect male",
            "Eric": "Chinese, Sichuan dialect male", "Ryan": "English, dynamic male",
            "Aiden": "English, sunny American male", "Ono_Anna": "Japanese, playful female",
            "Sohee": "Korean, warm female",
        }  # fmt: skip
        print(f"{'speaker':<12}note (Qwen3-TTS CustomVoice; every speaker speaks all ten languages)")
        for name in SPEAKERS:
            print(f"{name:<12}{notes.get(name, '')}")
        return
    from models.voices import SYSTEM_VOICES, VOICES_BY_NAME, voices_for

    voices = voices_for(model) if model else list(SYSTEM_VOICES)
    print(f"{'voice':<14}{'sex':<5}{'dialect':<20}{'note':<32}models")
    for v in voices:
        fams = ",".join(sorted(VOICES_BY_NAME[v.name].families))
        print(f"{v.name:<14}{v.sex:<5}{(v.dialect or '-'):<20}{v.note:<32}{fams}")


def config_from_args(args: argparse.Namespace):  # -> DubConfig (import kept lazy)
    from core.config import build_config

    if args.video is None:
        raise InputError("no input video given (usage: python -m flows.dub VIDEO --langs ja,en,ko)")
    if not args.langs:
        raise InputError("no target languages given; use --langs, e.g. --langs ja,en,ko")
    values: dict[str, object] = {
        "video": args.video,
        "langs": args.langs,
        "out": args.out,
        "voice": args.voice,
        "tts": args.tts,
        "translator": args.translator,
        "asr_model": args.asr_model,
        "separator": args.separator,
        "region": args.region,
        "source_lang": args.source_lang,
        "stream": args.stream,
        "tts_rpm": args.rpm,
        "concurrency": args.concurrency,
        "retry_attempts": args.retries,
        "max_speedup": args.max_speedup,
        "audio_codec": args.audio_codec,
        "container": args.container,
        "split_outputs": args.split_outputs,
        "duck_db": args.duck,
        "instructions": args.instructions,
        "dry_run": args.dry_run,
        "verify": args.verify,
        "verify_threshold": args.verify_threshold,
        "segments": args.segments,
        "subtitles": args.subtitles,
        "translator_model": args.translator_model,
        "glossary": args.glossary,
        "mt_domain": args.mt_domain,
        "tts_local_model": args.tts_local_model,
        "tts_size": args.tts_size,
        "voice_design": args.voice_design,
        "tts_batch": args.tts_batch,
        "clone": args.clone,
        "consent_dir": args.consent_dir,
        "clone_use": args.clone_use,
        "clone_ref": args.clone_ref,
        "clone_ref_text": args.clone_ref_text,
        "demucs_model": args.demucs_model,
        "demucs_dir": args.demucs_dir,
        "demucs_shifts": args.shifts,
        "demucs_overlap": args.overlap,
        "demucs_chunk_s": args.separation_chunk,
        "device": args.device,
        "shorten": not args.no_shorten,
        "shorten_model": args.shorten_model,
        "budget": args.budget,
    }
    for key, value in (
        ("tts_model", args.tts_model),
        ("mt_model", args.mt_model),
        ("cache_dir", args.cache_dir),
    ):
        if value is not None:
            values[key] = value
    return build_config(**values)


def disk_full(exc: BaseException, folders: tuple[Path, ...] = ()) -> bool:
    """ENOSPC anywhere in the exception chain, or a write failure on a folder with no space left
    (libsndfile reports a full disk only as an unspecified write error)."""
    import errno
    import shutil

    for folder in folders:
        probe = folder
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            if shutil.disk_usage(probe).free < 1 << 20:
                return True
        except OSError:
            pass
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return True
        if "no space left on device" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


INTERRUPTED = "error: interrupted; finished lines are cached and a re-run resumes from them"


def install_interrupt_handler() -> None:
    """Ctrl-C: tell the worker threads to start nothing new, then interrupt the main thread as usual."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum: int, frame: object) -> None:
        # Prefect's engine handles KeyboardInterrupt itself (it reports the run as crashed to its
        # server, which a terminal's Ctrl-C has just stopped too, and waits on it), so the handler
        # finishes the job here: no new line starts, one line is printed, the process leaves.
        CANCELLED.set()
        print(INTERRUPTED, file=sys.stderr)
        exit_now(130)

    signal.signal(signal.SIGINT, interrupt)


def exit_now(code: int) -> NoReturn:
    """Leave at once after an interrupt: stop Prefect's temporary server (a terminal's Ctrl-C reaches it
    too, and Prefect's exit hooks would then wait on it), and skip the exit hooks that would flush run
    events to it. Every artefact is written atomically, so nothing half-written is left to trust."""
    import logging

    logging.getLogger("prefect").setLevel(logging.CRITICAL)
    try:
        from prefect.server.api.server import SubprocessASGIServer

        for server in list(SubprocessASGIServer._instances.values()):
            server.stop()
    except Exception:  # noqa: BLE001 - best effort on the way out
        pass
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(code)


def start_temporary_server_quietly() -> None:
    """Without PREFECT_API_URL, Prefect starts a temporary server process on first use, writing to our
    terminal: its shutdown noise (uvicorn, SQLAlchemy tracebacks when the last run events of a failed
    job arrive as it stops) would follow the one-line error. Start it now with its stderr on /dev/null
    (--debug keeps it on the terminal); the flow then uses this instance (Prefect keeps one per process)."""
    try:
        from prefect.server.api.server import SubprocessASGIServer
        from prefect.settings import PREFECT_API_URL

        if PREFECT_API_URL.value():
            return
        server = SubprocessASGIServer()
        if server.running:
            return
        sys.stderr.flush()
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)  # the child inherits fd 2 as it is at fork time
            server.start()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
    except Exception:  # noqa: BLE001 - Prefect starts the server itself later, as usual
        return


def quiet_shutdown() -> None:
    """Prefect logs "Stopping temporary server" at exit, after our last line; the user's last line
    should be the result or the error."""
    import logging

    logging.getLogger("prefect").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    folders: tuple[Path, ...] = ()
    install_interrupt_handler()
    try:
        if args.list_voices:
            print_voices(args.tts_model, args.tts)
            return 0
        config = config_from_args(args)
        folders = (config.out_dir, config.cache_dir)
        from core.checks import preflight

        preflight(config)
        from flows.logs import configure_prefect_environment

        configure_prefect_environment(debug=args.debug, json_logs=args.log_json)
        if not args.debug:
            start_temporary_server_quietly()
        from flows.dub import dub

        flow = dub
        if args.task_runner or args.dask_address:
            from flows.runners import make_task_runner

            try:
                runner = make_task_runner(args.task_runner, args.dask_address)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            flow = dub.with_options(task_runner=runner)  # type: ignore[arg-type]
        try:
            result = flow(config)
        finally:
            quiet_shutdown()
    except DubError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (KeyboardInterrupt, Cancelled):
        print(INTERRUPTED, file=sys.stderr)
        exit_now(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, no traceback
        if args.debug:
            raise
        if disk_full(exc, folders):
            print("error: no space left on device; free some space and re-run (finished work is kept)",
                  file=sys.stderr)  # fmt: skip
            return 1
        if isinstance(exc, PermissionError):
            print(f"error: permission denied: {exc.filename or exc}", file=sys.stderr)
            return 1
        print(
            f"error: unexpected failure ({type(exc).__name__}); re-run with --debug for details",
            file=sys.stderr,
        )
        return 1
    if result.video is None:
        from tasks.estimate import format_estimates

        print(format_estimates(result.estimates))
        print(f"estimate: {result.report}")
        return 0
    print(f"dubbed video: {result.video}")
    print(f"report: {result.report}")
    for lang, path in result.subtitles.items():
        print(f"subtitles ({lang}): {path}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    raise SystemExit(main())
