"""`make demo`: dub the bundled sample into ja,en,ko with the route this machine can use."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent.parent / "media_samples" / "sample.mp4"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.demo", description=__doc__)
    parser.add_argument("--langs", default="ja,en,ko")
    parser.add_argument("--out", default="out/sample")
    args, extra = parser.parse_known_args(argv)
    if not os.environ.get("DASHSCOPE_API_KEY"):
        print(
            "error: the demo needs DASHSCOPE_API_KEY (DashScope route: Qwen-MT + qwen3-tts-flash); "
            "the local qwen-tts route is not available yet. Get a key at Model Studio and "
            "`export DASHSCOPE_API_KEY=sk-...`, then run `make demo` again.",
            file=sys.stderr,
        )
        return 2
    from flows.cli import main as dub_main

    return dub_main([str(SAMPLE), "--langs", args.langs, "--out", args.out, "--tts", "api", *extra])


if __name__ == "__main__":
    raise SystemExit(main())
