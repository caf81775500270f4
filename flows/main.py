"""The `qwen-dub` console script: one verb per existing entry point (`pip install .` installs it).

    qwen-dub dub VIDEO --langs ja,en,ko [options]   same as  python -m flows.dub VIDEO ...
    qwen-dub consent grant ...                       same as  python -m flows.consent ...
    qwen-dub cast add ...                            same as  python -m flows.cast ...
    qwen-dub doctor [--tts api|local] [--online]     same as  python -m flows.doctor ...
    qwen-dub models pull [--tts local] [--to DIR]    same as  python -m flows.model_weights ...
    qwen-dub serve ...                               same as  python -m flows.serve ...

Each verb is one row of VERBS (module, function, summary): the `python -m` entry points stay the source of
truth and keep working. A verb whose module is absent from this install (e.g. `studio` before
flows/studio.py exists) is left out of the table. A first argument that is no verb is taken as the
video of a `dub` job, so `qwen-dub VIDEO --langs ...` (the form before verbs) still works.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from typing import NamedTuple


class Verb(NamedTuple):
    module: str
    function: str
    summary: str


VERBS: dict[str, Verb] = {
    "dub": Verb("flows.cli", "main", "dub a video into one or more languages (the job)"),
    "consent": Verb("cloning.cli", "main", "record, list or revoke consent for voice cloning"),
    "cast": Verb("flows.cast", "main", "the cast registry: people and their voices"),
    "doctor": Verb("flows.doctor", "main", "check this machine for the chosen route, one line per check"),
    "models": Verb("flows.model_weights", "main", "fetch the weights a configuration needs (models pull)"),
    "serve": Verb("flows.serve", "main", "serve the dub flow as a Prefect deployment"),
    "studio": Verb("flows.studio", "main", "the web studio"),
}


def available_verbs() -> dict[str, Verb]:
    """The verbs whose module this install holds (checked without importing it)."""
    return {name: verb for name, verb in VERBS.items() if importlib.util.find_spec(verb.module) is not None}


def usage() -> str:
    verbs = available_verbs()
    width = max(len(name) for name in verbs)
    lines = ["usage: qwen-dub VERB [options]   (qwen-dub VERB --help for a verb's options)", "", "verbs:"]
    lines += [f"  {name.ljust(width)}  {verb.summary}" for name, verb in verbs.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    verbs = available_verbs()
    name, rest = args[0], args[1:]
    if name not in verbs:
        if name.startswith("-") or name in VERBS:  # a flag before any verb, or a verb not installed
            print(f"error: unknown command {name!r}; commands: {', '.join(verbs)}", file=sys.stderr)
            return 2
        name, rest = "dub", args  # `qwen-dub VIDEO --langs ...`
    verb = verbs[name]
    entry: Callable[[list[str]], int] = getattr(importlib.import_module(verb.module), verb.function)
    return entry(rest)


if __name__ == "__main__":
    raise SystemExit(main())
