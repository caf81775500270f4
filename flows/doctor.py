"""`qwen-dub doctor` (or `python -m flows.doctor`): is this machine ready for the chosen route?

    qwen-dub doctor                               # the API route (DashScope TTS and Qwen-MT)
    qwen-dub doctor --tts local --translator local --langs ja,en
    qwen-dub doctor --online                      # also one free authenticated DashScope call, and ask
                                                  # the hub whether models not yet cached can be fetched

One line per check: `ok`, `warn` (runs, but slower or later) or `FAIL` (blocks the route), then a summary.
Checks: ffmpeg (version, the filters and encoders the code uses), ffprobe, Rubber Band, espeak-ng (tests),
the key's presence (never its value), CUDA and GPU memory, each model the configuration loads (cached /
downloadable / missing, with the `qwen-dub models pull` command that fetches it), free space and access in
the cache, model cache and output folders, the Prefect API (temporary or configured server).

Exit codes: 0 the route can run (warnings allowed), 1 at least one check FAILed, 2 bad flags.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.doctor import Check, DoctorOptions, run_checks
from flows.model_weights import add_model_arguments, settings_from


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qwen-dub doctor",
        description=__doc__.split("\n\n")[0],
        epilog="exit codes: 0 ready (warnings allowed), 1 something blocks the route, 2 bad flags",
    )
    add_model_arguments(parser)
    parser.add_argument("--langs", default="", help="target languages, comma-separated (checked)")
    parser.add_argument("--online", action="store_true", help="one authenticated call; ask the hub")
    parser.add_argument("--region", default="intl", choices=["intl", "cn"])
    parser.add_argument("--out", type=Path, default=Path("out"), help="the output folder jobs will use")
    parser.add_argument("--cache-dir", type=Path, default=None, help="qwen-dub's cache (QWENDUB_CACHE_DIR)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = DoctorOptions(
        models=settings_from(args),
        langs=tuple(code for code in args.langs.split(",") if code.strip()),
        online=args.online,
        region=args.region,
        out=args.out,
        cache_dir=args.cache_dir,
    )
    checks: list[Check] = []
    for check in run_checks(options):
        print(check.line(), flush=True)
        checks.append(check)
    failed = [c.name for c in checks if c.verdict == "FAIL"]
    warned = sum(c.verdict == "warn" for c in checks)
    if failed:
        print(f"error: {len(failed)} check(s) block this route: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"ready: {len(checks)} checks, {warned} warning(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
