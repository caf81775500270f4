"""Retention commands: what a job and the clip cache keep, and for how long.

    python -m flows.retention job JOB_FOLDER [--cache-dir DIR] [--keep-cache]
        remove the job's intermediate audio (<job>/work) and the cached clips it used
    python -m flows.retention cache --keep-days N [--cache-dir DIR]
        remove clip cache entries made more than N days ago

Both print what they freed; deliverables are never touched. Errors are one `error: ...` line, exit 2; exit 1
when something could not be removed (each named).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see python -m flows.retention --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m flows.retention", description="Remove intermediate audio and old clips.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    cache = _Parser(add_help=False)
    cache.add_argument(
        "--cache-dir", type=Path, metavar="DIR",
        help="the clip cache (default: $QWENDUB_CACHE_DIR or ~/.cache/qwen-dub)",
    )  # fmt: skip
    job = sub.add_parser("job", parents=[cache], help="remove a job's intermediate audio and cached clips")
    job.add_argument("job", type=Path, metavar="JOB_FOLDER")
    job.add_argument("--keep-cache", action="store_true", help="leave the cached clips")
    age = sub.add_parser("cache", parents=[cache], help="remove cached clips older than --keep-days")
    age.add_argument("--keep-days", type=float, required=True, metavar="N")
    return parser


def main(argv: list[str] | None = None) -> int:
    from core.config import default_cache_dir
    from core.retention import clean_job, expire_cache

    args = build_parser().parse_args(argv)
    cache_dir = args.cache_dir or default_cache_dir()
    if args.command == "job":
        if not (args.job / "work").is_dir():
            print(f"error: {args.job} is not a job folder (no work/ in it)", file=sys.stderr)
            return 2
        work, cache = clean_job(args.job, None if args.keep_cache else cache_dir)
        print(work.line(f"intermediate audio of {args.job}"))
        print(cache.line(f"cached clips in {cache_dir}"))
        problems = work.problems + cache.problems
    else:
        if args.keep_days < 0:
            print("error: --keep-days must not be negative", file=sys.stderr)
            return 2
        freed = expire_cache(cache_dir, args.keep_days)
        print(freed.line(f"cached clips older than {args.keep_days:g} days in {cache_dir}"))
        problems = freed.problems
    for problem in problems:
        print(f"not removed: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
