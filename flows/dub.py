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

from prefect import flow

from core.checks import preflight
from core.config import DubConfig
from flows.pipeline import DubResult, run_job
from flows.runners import make_task_runner

__all__ = ["DubResult", "dub"]


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
