"""`make demo`: dub the bundled sample (30 s of English speech) into ja,en,ko with the route this machine
can run, saying first what it will do and about how long it will take.

    with DASHSCOPE_API_KEY   the DashScope route (Qwen-MT + qwen3-tts-flash): about a minute
    no key, a CUDA GPU       the local route with its default (GPU) models
    no key, no GPU           the laptop configuration: the smallest local models (qwen-tts 0.6B, the CPU
                             translator Qwen2.5-1.5B-Instruct, Whisper tiny) and `--separator none`
    no key, no GPU, and too little memory for those models: one line naming the two ways to run it
    (set a key, or use a GPU) and exit 2, before anything is downloaded.

The durations are estimates for the 30 s sample, not measurements of this machine: the local figures
assume a 4-core laptop CPU and exclude the one-time model download (sizes as published on the hub).
Extra arguments go to the dub command as they are (`make demo DEMO_ARGS="--voice Cherry"`).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent.parent / "media_samples" / "sample.mp4"
# float32 on the CPU: Qwen2.5-1.5B-Instruct about 6 GB, qwen-tts 0.6B about 2.5 GB, Whisper tiny 0.2 GB;
# the stages load them one after another but the process keeps them, so the sum must fit
LAPTOP_MEMORY_GIB = 10.0
NEEDS = "set DASHSCOPE_API_KEY (export DASHSCOPE_API_KEY=sk-...) or run it on a machine with a CUDA GPU"


@dataclass(frozen=True)
class Machine:
    has_key: bool
    gpu: bool
    memory_gib: float  # total physical memory


@dataclass(frozen=True)
class DemoPlan:
    route: str  # "api" | "local-gpu" | "laptop"
    args: tuple[str, ...]  # options for the dub command
    says: str  # what it will do and how long it will take


def machine() -> Machine:
    """This machine: the key's presence (never its value), a CUDA device, total memory."""
    from models.whisper_asr import cuda_available

    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (OSError, ValueError):
        memory = 0.0
    return Machine(bool(os.environ.get("DASHSCOPE_API_KEY")), cuda_available(), memory)


def plan_demo(m: Machine) -> DemoPlan | str:
    """The configuration this machine can finish, or the one line that says it cannot (its `error:`)."""
    if m.has_key:
        return DemoPlan(
            "api",
            ("--tts", "api", "--translator", "api"),
            "DashScope route (Qwen-MT + qwen3-tts-flash), key from DASHSCOPE_API_KEY; about a minute "
            "(demucs separation on this machine, about 0.3 MB of API audio per language)",
        )
    if m.gpu:
        return DemoPlan(
            "local-gpu",
            ("--tts", "local", "--translator", "local", "--device", "cuda"),
            "no DASHSCOPE_API_KEY, a CUDA GPU: the local route with its GPU models (qwen-tts 1.7B, "
            "Qwen2.5-7B-Instruct, Whisper large-v3); a few minutes, after a one-time download of about "
            "22 GB from Hugging Face",
        )
    if m.memory_gib < LAPTOP_MEMORY_GIB:
        return (
            f"the demo cannot run here: no DASHSCOPE_API_KEY, no GPU, and {m.memory_gib:.0f} GiB of memory "
            f"(the smallest local models need about {LAPTOP_MEMORY_GIB:.0f}); {NEEDS}"
        )
    return DemoPlan(
        "laptop",
        ("--tts", "local", "--tts-size", "0.6B", "--translator", "local", "--asr-model", "tiny",
         "--separator", "none", "--device", "cpu"),
        "no DASHSCOPE_API_KEY and no GPU: the laptop configuration, the smallest local models on the CPU "
        "(qwen-tts 0.6B, Qwen2.5-1.5B-Instruct, Whisper tiny) and no source separation (the dub is mixed "
        "over silence); an estimated 15-30 minutes on a 4-core laptop, after a one-time download of about "
        f"5 GB from Hugging Face (faster: {NEEDS})",
    )  # fmt: skip


def main(argv: list[str] | None = None, probe: Machine | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.demo", description=__doc__)
    parser.add_argument("--langs", default="ja,en,ko")
    parser.add_argument("--out", default="out/sample")
    args, extra = parser.parse_known_args(argv)
    plan = plan_demo(probe or machine())
    if isinstance(plan, str):
        print(f"error: {plan}", file=sys.stderr)
        return 2
    print(f"demo: {plan.says}", flush=True)  # stdout: stderr is kept for a failure's one line
    from flows.cli import main as dub_main

    return dub_main([str(SAMPLE), "--langs", args.langs, "--out", args.out, *plan.args, *extra])


if __name__ == "__main__":
    raise SystemExit(main())
