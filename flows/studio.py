"""The review studio: see the whole dub, hear any line, fix it, re-dub only what changed, in the browser.

    python -m flows.studio out/<job> [--port N] [--host H --token T]

Serves one job folder on http://127.0.0.1:8765/ (webstudio/server.py); the JSON API is in the README.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
from pathlib import Path

from core.errors import InputError

DEFAULT_PORT = 8765


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
    return parser.parse_args(argv)


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
    try:
        server = StudioServer(args.job, args.host, args.port, token)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port} ({exc.strerror or exc})", file=sys.stderr)
        return InputError.exit_code
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    url = server.url + (f"?token={token}" if token else "")
    print(f"studio for {server.job.root.name}: {url}  (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
