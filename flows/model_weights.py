"""`qwen-dub models pull` (or `python -m flows.model_weights pull`): every weight a configuration needs,
fetched before a job, into the hub cache or a folder to copy to an offline machine.

    qwen-dub models pull                          # the API route's models: demucs + faster-whisper
    qwen-dub models pull --tts local --translator local --asr-model large-v3
    qwen-dub models pull --tts local --to /media/usb/hf-cache   # then: HF_HUB_CACHE=... HF_HUB_OFFLINE=1
    qwen-dub models list [same flags]             # where each model stands (local/bundled/cached/...)

The flags are the job's own (same names, same defaults), so the command a job's error names fetches
exactly what that job loads. Exit codes: 0 done, 2 bad flags or a model the hub cannot serve, 3 a
download failed (network, disk), 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from core.errors import DubError
from models.store import ModelNeed, ModelSettings, model_status, pull, required_models


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The job flags that decide which models load (defaults as in core/config.py)."""
    from models.registry import translator_names, tts_names

    parser.add_argument("--tts", default="api", choices=tts_names())
    parser.add_argument("--translator", default="api", choices=translator_names())
    parser.add_argument("--asr-model", default="auto", metavar="NAME_OR_DIR")
    parser.add_argument("--separator", default="htdemucs", choices=["htdemucs", "none"])
    parser.add_argument("--demucs-model", default="htdemucs", metavar="NAME_OR_DIR")
    parser.add_argument("--tts-size", default="1.7B", choices=["1.7B", "0.6B"])
    parser.add_argument("--tts-local-model", default=None, metavar="ID_OR_DIR")
    parser.add_argument("--voice-design", default=None, metavar="TEXT", help="the model for voice design")
    parser.add_argument("--translator-model", default=None, metavar="ID_OR_DIR")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--diarizer", default="embedding", choices=["embedding", "pyannote", "none"])


def settings_from(args: argparse.Namespace) -> ModelSettings:
    return ModelSettings(
        tts=args.tts,
        translator=args.translator,
        asr_model=args.asr_model,
        separator=args.separator,
        demucs_model=args.demucs_model,
        tts_size=args.tts_size,
        tts_local_model=args.tts_local_model,
        voice_design=bool(args.voice_design),
        translator_model=args.translator_model,
        device=args.device,
        diarizer=args.diarizer,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qwen-dub models", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pull_parser = commands.add_parser("pull", help="fetch the weights a configuration needs")
    add_model_arguments(pull_parser)
    pull_parser.add_argument(
        "--to", type=Path, default=None, metavar="DIR", help="a hub-cache folder instead of HF_HUB_CACHE"
    )
    list_parser = commands.add_parser("list", help="where each model of a configuration stands")
    add_model_arguments(list_parser)
    list_parser.add_argument("--to", type=Path, default=None, metavar="DIR", help="the hub-cache folder")
    return parser


def human_size(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def run_pull(needs: list[ModelNeed], cache_dir: Path | None) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    for need in needs:
        if need.local is not None or need.bundled:
            print(f"{need.role}: {need.name} (no download: {'bundled' if need.bundled else 'local folder'})")
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=console,
    )
    task = progress.add_task("models", total=None)

    def on_plan(plan: list[tuple[ModelNeed, list[tuple[str, int]]]]) -> None:
        total = sum(size for _, files in plan for _, size in files)
        where = cache_dir or "the Hugging Face cache (HF_HUB_CACHE)"
        for need, files in plan:
            print(f"{need.role}: {need.name}, {len(files)} files, {human_size(sum(s for _, s in files))}")
        print(f"total: {human_size(total)} into {where}", flush=True)
        progress.update(task, total=total)
        if total:
            progress.start()

    def on_file(need: ModelNeed, name: str, size: int) -> None:
        progress.update(task, advance=size, description=f"{need.name}/{name}")

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # one bar, ours
    try:
        pull(needs, cache_dir, on_plan, on_file)
    finally:
        if progress.live.is_started:
            progress.stop()
    print(f"done: models ready in {cache_dir or 'the Hugging Face cache'}")
    if cache_dir is not None:
        print(f"offline use: HF_HUB_CACHE={cache_dir} HF_HUB_OFFLINE=1 qwen-dub dub ...")
    return 0


def run_list(needs: list[ModelNeed], cache_dir: Path | None) -> int:
    for need in needs:
        state, detail = model_status(need, cache_dir)
        print(f"{state:12} {need.role}: {need.name} ({detail})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        needs = required_models(settings_from(args))
        cache_dir = args.to.expanduser().resolve() if args.to else None
        if args.command == "list":
            return run_list(needs, cache_dir)
        from models.store import offline

        if offline():
            print("error: HF_HUB_OFFLINE is set: `models pull` needs the hub; unset it", file=sys.stderr)
            return 2
        return run_pull(needs, cache_dir)
    except DubError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(
            "error: interrupted; files fetched so far stay in the cache, run it again to finish",
            file=sys.stderr,
        )
        return 130
    except Exception as exc:  # noqa: BLE001 - network and disk errors: one line naming the failure
        text = (str(exc).strip().splitlines() or [""])[0][:300] or type(exc).__name__
        print(f"error: download failed ({type(exc).__name__}): {text}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    raise SystemExit(main())
