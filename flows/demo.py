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
    from models.registry import API, LOCAL

    if os.environ.get("DASHSCOPE_API_KEY"):
        route = ["--tts", API, "--translator", API]
        print(
            "demo: DashScope route (Qwen-MT + qwen3-tts-flash), key from DASHSCOPE_API_KEY", file=sys.stderr
        )
    else:
        route = ["--tts", LOCAL, "--translator", LOCAL]
        print(
            "demo: no DASHSCOPE_API_KEY, so the local route: qwen-tts and a Qwen chat model on this machine "
            "(weights are downloaded from Hugging Face on first use; a GPU is strongly recommended)",
            file=sys.stderr,
        )
    from flows.cli import main as dub_main

    return dub_main([str(SAMPLE), "--langs", args.langs, "--out", args.out, *route, *extra])


if __name__ == "__main__":
    raise SystemExit(main())
