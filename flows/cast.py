"""The cast registry's command line: the same person keeps their voice across videos.

    python -m flows.cast add JOB_DIR SPEAKER --name NAME --registry DIR [--voice V [--tts api|local]]
                              [--replace]
    python -m flows.cast list --registry DIR
    python -m flows.cast remove NAME --registry DIR

`add` registers a speaker of a finished job (its folder: segments.json, cast.json, work/vocals.wav or
work/analysis.wav): their voice print, made from their lines, and the voice they spoke with in that job
on every TTS route cast.json records (or `--voice V` on `--tts`'s route). No audio is stored. A later job
with `--cast-registry DIR` gives a speaker whose voice print matches the person's voice
(tasks/cast_registry.py). Every error is one `error: ...` line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from core.errors import ConfigError, DubError, InputError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, like every other error of the project
        self.exit(2, f"error: {message} (see python -m flows.cast --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m flows.cast", description="Manage the cast registry (--cast-registry).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    registry = _Parser(add_help=False)
    registry.add_argument("--registry", type=Path, required=True, metavar="DIR", help="cast registry folder")
    add = sub.add_parser("add", parents=[registry], help="register a speaker of a finished job")
    add.add_argument("job", type=Path, metavar="JOB_DIR", help="the job folder (--out of the job)")
    add.add_argument("speaker", metavar="SPEAKER", help="the speaker as segments.json names them (S1, ...)")
    add.add_argument("--name", required=True, help="the person's name")
    add.add_argument("--voice", help="their voice (default: the voices they had in the job's cast.json)")
    add.add_argument("--tts", default=None, help="the TTS engine --voice belongs to (default: api)")
    add.add_argument("--replace", action="store_true", help="replace a person already registered")
    sub.add_parser("list", parents=[registry], help="list the registered people")
    remove = sub.add_parser("remove", parents=[registry], help="remove a person")
    remove.add_argument("name", metavar="NAME")
    return parser


def job_speech(job: Path) -> Path:
    """The speech a job measured its speakers on: the separated vocals, else the analysis copy."""
    for name in ("vocals.wav", "analysis.wav"):
        path = job / "work" / name
        if path.is_file():
            return path
    raise InputError(f"{job}: no work/vocals.wav or work/analysis.wav (is it a finished job folder?)")


def job_voices(job: Path, speaker: str, voice: str | None, tts: str | None) -> dict[str, str]:
    """The person's voice per TTS route: `voice` (checked against `tts`'s catalogue), else what the job's
    cast.json gave the speaker."""
    from core.config import DubConfig
    from models.registry import API, tts_engine

    if voice is not None:
        engine = tts_engine(tts or API)
        return {engine.name: engine.resolve_voice(DubConfig.model_construct(tts=engine.name), voice)}
    if tts is not None:
        raise ConfigError("--tts names the engine of --voice; give --voice too")
    from tasks.cast import CAST_FILE, read_cast

    entry = read_cast(job / CAST_FILE).get(speaker)
    if entry is None or not entry.voices:
        raise ConfigError(f"{job / CAST_FILE} gives {speaker!r} no voice: give one with --voice")
    return dict(entry.voices)


def add(args: argparse.Namespace) -> str:
    from audio.speech_reader import SpeechReader
    from models.speaker_embedding import EMBEDDING_MODEL
    from tasks.cast import speakers_of
    from tasks.cast_registry import MIN_PRINT_S, Person, add_person, speaker_print
    from tasks.segment import load_plan

    job: Path = args.job
    if not (job / "segments.json").is_file():
        raise InputError(f"{job}: no segments.json (is it a finished job folder?)")
    _, lines = load_plan(job / "segments.json")
    own = [ln for ln in lines if ln.speaker == args.speaker]
    if not own:
        raise ConfigError(
            f"no speaker {args.speaker!r} in {job / 'segments.json'} ({', '.join(speakers_of(lines))})"
        )
    voices = job_voices(job, args.speaker, args.voice, args.tts)
    with SpeechReader(job_speech(job)) as speech:
        made = speaker_print(speech, own)
    if made is None:
        raise InputError(
            f"{args.speaker} speaks less than {MIN_PRINT_S:g} s in {job}: too little for a voice print"
        )
    vector, seconds = made
    person = Person(
        name=args.name.strip(), voices=voices, vector=vector, model=EMBEDDING_MODEL, seconds=seconds,
        source={"job": str(job.resolve()), "speaker": args.speaker},
    )  # fmt: skip
    if not person.name:
        raise ConfigError("--name is empty")
    path = add_person(args.registry, person, replace=args.replace)
    shown = ", ".join(f"{route}: {voice}" for route, voice in sorted(voices.items()))
    return f"registered {person.name} ({shown}; voice print of {seconds:.0f} s) in {path}"


def list_people(args: argparse.Namespace) -> str:
    from tasks.cast_registry import load_registry

    people = load_registry(args.registry)
    if not people:
        return f"{args.registry}: nobody registered"
    rows = [f"{'name':<24}{'voices':<36}{'print':>8}  from"]
    for p in people:
        voices = ", ".join(f"{route}: {voice}" for route, voice in sorted(p.voices.items()))
        source = f"{p.source.get('job', '')} {p.source.get('speaker', '')}".strip()
        rows.append(f"{p.name:<24}{voices:<36}{p.seconds:>7.0f}s  {source}")
    return "\n".join(rows)


def remove(args: argparse.Namespace) -> str:
    from tasks.cast_registry import remove_person

    return f"removed {args.name} ({remove_person(args.registry, args.name).name})"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        command = {"add": add, "list": list_people, "remove": remove}[args.command]
        print(command(args))
    except DubError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
