"""The review studio: see the whole dub, hear any line, fix it, re-dub only what changed, in the browser.

    python -m flows.studio out/<job> [--port N] [--host H --token T] [--deployment dub/dub-cpu]

Serves one job folder on http://127.0.0.1:8765/ (webstudio/server.py); the JSON API is in the README.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
from pathlib import Path

from core.errors import InputError

DEFAULT_PORT = 8765
DEPLOYMENT_ENV = "QWENDUB_STUDIO_DEPLOYMENT"  # the deployment re-dubs run, when --deployment is not given


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m flows.studio",
        description="Review a dub in the browser: the video with every track, a timeline of every line, "
        "edits, and re-dubbing of what changed.",
    )
    parser.add_argument("job", type=Path, metavar="JOB", help="the job folder a dub wrote (out/<video name>)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free)"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    parser.add_argument(
        "--token",
        help="required on any address other than this machine's: the page asks for it once "
        "(default there: a random one, printed with the address)",
    )
    parser.add_argument(
        "--deployment",
        default=os.environ.get(DEPLOYMENT_ENV) or None,
        metavar="FLOW/NAME",
        help="re-dub as a run of this Prefect deployment (e.g. dub/dub-cpu; its worker or serve process "
        f"must see the job folder at the same path; default ${DEPLOYMENT_ENV}; none: the flow runs in "
        "the studio's process)",
    )
    return parser.parse_args(argv)


def check_deployment(name: str) -> str | None:
    """Why `name` cannot take runs from this process (None when it can): the Prefect API this process
    is configured for must hold that deployment."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL

    if "/" not in name:
        return f"--deployment {name}: name it as flow/deployment, e.g. dub/dub-cpu"
    api = PREFECT_API_URL.value()
    if not api:
        return "--deployment needs a Prefect server: prefect config set PREFECT_API_URL=http://HOST:4200/api"
    try:
        with get_client(sync_client=True) as client:
            client.read_deployment_by_name(name)
    except ObjectNotFound:
        return f"no deployment {name} on the Prefect API at {api} (prefect deployment ls lists them)"
    except Exception as exc:  # noqa: BLE001 - unreachable API, bad URL: one line
        return f"cannot reach the Prefect API at {api} ({type(exc).__name__})"
    return None


def open_command(job_root: Path) -> str:
    """The command that opens the studio on a job (the run's summary artifact shows it)."""
    import shlex

    return f"python -m flows.studio {shlex.quote(str(job_root))}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from webstudio.job import StudioError, StudioJob
    from webstudio.server import StudioServer, is_loopback

    try:
        StudioJob(args.job).check()
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return InputError.exit_code
    token = args.token
    if not is_loopback(args.host) and not token:
        token = secrets.token_urlsafe(24)
    if token is not None and len(token) < 16:
        print("error: --token must be at least 16 characters", file=sys.stderr)
        return InputError.exit_code
    if args.deployment:
        problem = check_deployment(args.deployment)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return InputError.exit_code
    try:
        server = StudioServer(args.job, args.host, args.port, token, args.deployment)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port} ({exc.strerror or exc})", file=sys.stderr)
        return InputError.exit_code
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    url = server.url + (f"?token={token}" if token else "")
    where = f"; re-dubs run deployment {args.deployment}" if args.deployment else ""
    print(f"studio for {server.job.root.name}: {url}{where}  (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
