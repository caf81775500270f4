"""Run the `dub` flow as a Prefect service on this machine: `python -m flows.serve`.

    prefect server start                          # once, in another terminal (UI at http://127.0.0.1:4200)
    prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api
    python -m flows.serve [--name dub] [--limit 2] [--task-runner dask --dask-address tcp://host:8786]

It registers the deployment "dub/<name>" with the Prefect API and executes its runs in subprocesses of
this process until Ctrl-C. The flow's single parameter is the pydantic `DubConfig`, so the UI's "Run"
form shows every field with its type, default and description, and a run started from the UI, from
`prefect deployment run dub/dub --params '{"config": {...}}'` or from `run_deployment()` is validated
against the same model the CLI builds. See docs/operations.md for work pools, workers and scale-out.

Importing this module has no side effect (nothing heavy is imported, nothing is registered).
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from typing import TYPE_CHECKING, Any

from flows.runners import DASK_ADDRESS_ENV, TASK_RUNNER_ENV, make_task_runner

if TYPE_CHECKING:  # pragma: no cover - typing only
    from prefect.deployments.runner import RunnerDeployment

DEPLOYMENT_NAME = "dub"

# What the UI's run form is pre-filled with. A run's `config` replaces this object as a whole (Prefect
# merges parameters by top-level name only), so every run names its own video and languages.
EXAMPLE_PARAMETERS: dict[str, Any] = {
    "config": {"video": "media_samples/sample.mp4", "langs": ["ja", "en", "ko"], "separator": "none"}
}


def resolve_annotations(flow: Any) -> None:
    """Replace the flow function's string annotations (flows/dub.py has `from __future__ import
    annotations`) by the types they name. A served run executes the flow object in a spawned process:
    cloudpickle ships the function by value (its module attribute is the Flow, not the function), with
    only the globals its body uses, so Prefect's parameter validation there could not resolve "DubConfig"
    ("DubModel is not fully defined"). Deployments run by workers import the entrypoint and are unaffected."""
    import typing

    flow.fn.__annotations__ = typing.get_type_hints(flow.fn)


def deployment_options(
    name: str = DEPLOYMENT_NAME,
    parameters: dict[str, Any] | None = None,
    tags: list[str] | None = None,
) -> dict[str, Any]:
    """Arguments shared by `dub.serve(...)` and `dub.to_deployment(...)` (what the tests build)."""
    return {
        "name": name,
        "parameters": EXAMPLE_PARAMETERS if parameters is None else parameters,
        "tags": ["qwen-dub", *(tags or [])],
        "description": "Dub a video into one or more languages with Qwen TTS (one DubConfig parameter).",
        "enforce_parameter_schema": True,
    }


def build_deployment(name: str = DEPLOYMENT_NAME, **options: Any) -> RunnerDeployment:
    """The deployment object `python -m flows.serve` registers (without registering it)."""
    from flows.dub import dub

    deployment = dub.to_deployment(**deployment_options(name, **options))
    assert not inspect.isawaitable(deployment)  # to_deployment is sync when called outside an event loop
    return deployment


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m flows.serve",
        description="Serve the dub flow as a Prefect deployment from this machine (runs until Ctrl-C).",
    )
    p.add_argument("--name", default=DEPLOYMENT_NAME, help="deployment name (default dub: dub/dub)")
    p.add_argument("--limit", type=int, default=2, help="flow runs executed at once by this process")
    p.add_argument(
        "--global-limit",
        type=int,
        default=None,
        help="flow runs of this deployment at once across every process serving it",
    )
    p.add_argument("--tag", action="append", default=[], help="extra deployment tag (repeatable)")
    p.add_argument(
        "--task-runner",
        choices=["thread", "dask"],
        default=None,
        help=f"task runner for the per-language stages (default ${TASK_RUNNER_ENV} or thread)",
    )
    p.add_argument(
        "--dask-address",
        default=None,
        help=f"Dask scheduler, e.g. tcp://10.0.0.5:8786 (default ${DASK_ADDRESS_ENV}; none: local cluster)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        runner = make_task_runner(args.task_runner, args.dask_address)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from flows.dub import dub

    resolve_annotations(dub)
    flow = dub.with_options(task_runner=runner)  # type: ignore[arg-type]  # served runs execute this object
    flow.serve(
        **deployment_options(args.name, tags=args.tag), limit=args.limit, global_limit=args.global_limit
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
