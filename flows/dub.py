"""The `dub` flow: one video in, one video out with a dubbed audio track and subtitles per language.

    python -m flows.dub VIDEO --langs ja,en,ko        (see flows/cli.py for every option)

Stages (Prefect tasks, files between them):
probe -> extract audio -> separate -> transcribe -> segment -> [per language, in parallel]
translate-<lang> -> [per line needing audio] tts-<lang>-<index> (synthesize, shorten if over the cap,
fit to the slot) -> lines-<lang> -> assemble-<lang> (place, mix, subtitles) -> remux -> report
"""

if __name__ == "__main__":  # the CLI answers --help, bad flags and failed checks before Prefect loads;
    from flows.cli import prepare_or_exit  # the block at the end then runs this file's flow (loaded once)

    invocation = prepare_or_exit()

from prefect import flow

from core.checks import preflight
from core.config import DubConfig
from flows.pipeline import DubResult, run_job
from flows.runners import flow_run_name, make_task_runner

__all__ = ["DubResult", "dub"]


@flow(
    name="dub",
    flow_run_name=flow_run_name,  # dub-<video stem>
    task_runner=make_task_runner(),  # type: ignore[arg-type]  # a concurrent-future runner
    log_prints=False,
    validate_parameters=False,  # preflight validates `config`: a bad value fails with its one line
)
def dub(config: DubConfig) -> DubResult:
    """Dub a video into the requested languages with Qwen TTS."""
    from prefect.states import Failed

    from core.errors import DubError

    try:  # the CLI's checks, for runs started from the UI, a deployment or run_deployment as well
        config = preflight(config)  # a deployment run's config arrives as JSON: validated here
    except DubError as exc:  # the run's state message is the one line; a caller still gets `exc`
        return Failed(message=str(exc), data=exc)  # type: ignore[return-value]
    from core.job_lock import job_lock

    with job_lock(config.out_dir, "dub"):  # one run per job folder; the studio edits only between runs
        return run_job(config)


if __name__ == "__main__":  # python -m flows.dub: the job prepared at the top, run with this module's flow
    from flows.cli import run

    raise SystemExit(run(invocation, dub))
