"""Command line: `qwen-dub VIDEO --langs ja,en,ko [options]` (or `python -m flows.dub ...`).

The parser is derived from DubConfig (core/config.py), the one place an option is written: each field is
one option whose `dest` is the field's name, whose flag, metavar, default and help come from the field
(its type, default, constraints, description) and its `cli(...)` metadata, and whose value pydantic
converts and checks (so a bad value names the flag: `--rpm -5` -> "--rpm: must be ≥ 1, not -5"). Options
the user does not give stay out of the config (argparse.SUPPRESS), so every default is the field's own.
The engine choices (`--tts`, `--translator`) are the registry's (models/registry.py). The options that
drive this command rather than the job (COMMAND_OPTIONS: --list-voices, --task-runner, --dask-address,
--log-json, --debug) live here. `--help` and the README's options table (`python -m flows.cli
--markdown-options`, checked by tests/test_cli_options.py) are rendered from the same list.

Parsing and --help import nothing heavy. Every user error ends as one `error: ...` line on stderr and
a non-zero exit, before Prefect starts when it can be known up front (core/checks.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from core.errors import ConfigError, DubError, InputError
from core.parallel import CANCELLED, Cancelled
from flows.runners import DASK_ADDRESS_ENV, RUNNER_KINDS, TASK_RUNNER_ENV

if TYPE_CHECKING:  # pragma: no cover - typing only
    from prefect import Flow
    from prefect.task_runners import TaskRunner

    from core.config import DubConfig
    from flows.pipeline import DubResult

EPILOG = """\
environment:
  DASHSCOPE_API_KEY            API key for the DashScope engines (never passed as a flag)
  DASHSCOPE_HTTP_BASE_URL      override the region's API host (e.g. a proxy)
  DASHSCOPE_COMPATIBLE_BASE_URL, DASHSCOPE_WEBSOCKET_BASE_URL   idem for the other endpoints
  QWENDUB_CACHE_DIR            clip/translation cache (default ~/.cache/qwen-dub)

example:
  qwen-dub media_samples/sample.mp4 --langs ja,en,ko --voice Cherry
"""

REQUIRED = "(required)"
GROUPS = {
    "common": "job options",
    "advanced": "advanced job options",
    "command": "command options",
}


@dataclass(frozen=True)
class Option:
    """One command-line option as --help and the README show it."""

    dest: str  # the DubConfig field (or, for a command option, the attribute of the parsed arguments)
    flag: str  # "--rpm"; for a positional, its placeholder ("VIDEO")
    help: str  # the field's description: plain text, `backticks` for literal values
    default: str = ""  # the default as shown ("" when there is nothing to show)
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    switch: bool | None = None  # a flag without a value: the value it stores
    group: str = "common"  # common | advanced | command
    positional: bool = False
    hidden: bool = False  # parsed, but in neither --help nor the README

    @property
    def usage(self) -> str:
        """`--tts api|local`, `--rpm N`, `--stream`, `VIDEO`."""
        if self.positional or self.switch is not None:
            return self.flag
        value = "|".join(self.choices) if self.choices else self.metavar or self.dest.upper()
        return f"{self.flag} {value}"


COMMAND_OPTIONS = (
    Option("list_voices", "--list-voices", "print the TTS engine's voice catalogue (`--tts`, `--tts-model`) "
           "and exit", switch=True, group="command"),
    Option("task_runner", "--task-runner", "run the per-language stages and per-line tasks on threads or on "
           "a Dask cluster (prefect-dask)", default=f"`thread`, or `${TASK_RUNNER_ENV}`",
           choices=RUNNER_KINDS, group="command"),
    Option("dask_address", "--dask-address", "the Dask scheduler for `--task-runner dask`",
           default=f"`${DASK_ADDRESS_ENV}`, else a local cluster", metavar="tcp://HOST:8786",
           group="command"),
    Option("force", "--force", "run the job even when nothing it depends on changed since its last run "
           "(otherwise such a re-run prints its outputs and stops at once: `work/done.json`)", switch=True,
           group="command"),
    Option("log_json", "--log-json", "logs as JSON lines on stderr: run ids, stage, language, line index, "
           "figures", switch=True, group="command"),
    Option("debug", "--debug", "show tracebacks", switch=True, group="command"),
    Option("markdown_options", "--markdown-options", "print the README's options tables and exit",
           switch=True, group="command", hidden=True),
)  # fmt: skip


def _plain(text: str) -> str:
    return text.replace("`", "")


def _value_type(annotation: Any) -> Any:
    """`X | None` -> X."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def config_options() -> list[Option]:
    """One Option per DubConfig field, in declaration order (common options first)."""
    from pydantic_core import PydanticUndefined

    from core.config import DubConfig, cli_flag, cli_spec
    from models.registry import translator_names, tts_engine, tts_names

    engine_choices = {"tts": tuple(tts_names()), "translator": tuple(translator_names())}
    options = []
    for name, field in DubConfig.model_fields.items():
        spec = cli_spec(name)
        kind = _value_type(field.annotation)
        default = field.default
        choices = engine_choices.get(name)
        if typing.get_origin(kind) is typing.Literal:
            choices = tuple(str(c) for c in typing.get_args(kind))
        switch = (not default) if kind is bool else None
        if "default" in spec:
            shown = str(spec["default"])
        elif field.is_required():
            shown = REQUIRED
        elif name == "voice":  # each engine has its own (models/registry.py)
            shown = ", ".join(f"`{tts_engine(e).default_voice}` ({e})" for e in tts_names())
        elif default is None or default is PydanticUndefined or kind is bool:
            shown = ""
        else:
            shown = f"`{default}`"
        options.append(
            Option(
                dest=name,
                flag=cli_flag(name),
                # `--no-shorten` turns `shorten` off
                help=("do not " if switch is False else "") + (field.description or ""),
                default=shown,
                metavar=spec.get("metavar"),
                choices=choices,
                switch=switch,
                group="advanced" if spec.get("advanced") else "common",
                positional=bool(spec.get("positional")),
            )
        )
    return options


def all_options() -> list[Option]:
    return [*config_options(), *COMMAND_OPTIONS]


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """A bad flag is one line too, naming the flag: "error: --tts: invalid choice: 'x' (...)"."""
        message = message.removeprefix("argument ")
        self.exit(2, f"error: {message} (see --help)\n")


def prog_name() -> str:
    return "qwen-dub" if Path(sys.argv[0]).name == "qwen-dub" else "python -m flows.dub"


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog=prog_name(),
        description="Dub a video into one or more languages with Qwen TTS.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    groups = {key: p.add_argument_group(title) for key, title in GROUPS.items()}
    for option in all_options():
        text = _plain(option.help)
        if option.default == REQUIRED:
            text += f" {REQUIRED}"
        elif option.default:
            text += f" (default: {_plain(option.default)})"
        kwargs: dict[str, Any] = {
            "default": argparse.SUPPRESS,  # not given: the field's default applies
            "help": argparse.SUPPRESS if option.hidden else text.replace("%", "%%"),
        }
        group = groups[option.group]
        if option.positional:
            group.add_argument(option.dest, nargs="?", metavar=option.flag, **kwargs)
        elif option.switch is not None:
            action = "store_true" if option.switch else "store_false"
            group.add_argument(option.flag, dest=option.dest, action=action, **kwargs)
        else:
            group.add_argument(
                option.flag, dest=option.dest, metavar=option.metavar, choices=option.choices, **kwargs
            )
    return p


def markdown_options() -> str:
    """The README's options tables: one per group, one row per option, in --help's order."""
    blocks = []
    titles = {"common": "Options", "advanced": "Advanced options", "command": "Options of the command"}
    for group, title in titles.items():
        rows = [f"{title}:", "", "| option | default | meaning |", "|---|---|---|"]
        for option in all_options():
            if option.group == group and not option.hidden:
                usage = f"`{option.usage}`"
                if option.group != "command" and option.flag != "--" + option.dest.replace("_", "-"):
                    usage += f" (`{option.dest}`)"  # the field's name, as a deployment's config has it
                cells = (usage, option.default, option.help)
                rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        blocks.append("\n".join(rows))
    return "\n\n".join(blocks) + "\n"


def print_voices(args: argparse.Namespace) -> None:
    """The catalogue of the engine and model the other flags name (`--tts local`, `--tts-model ...`)."""
    from core.config import DubConfig
    from models.registry import tts_engine

    values = {k: v for k, v in vars(args).items() if k in DubConfig.model_fields and k not in ("video",)}
    config = DubConfig.model_construct(**values)  # only the engine's options matter here
    engine = tts_engine(config.tts)
    print(f"{'voice':<14}{'sex':<5}note ({engine.name} engine, {engine.model_name(config)})")
    for voice in engine.voices(config):
        print(f"{voice.name:<14}{(voice.sex or '-'):<5}{voice.note}")


def config_from_args(args: argparse.Namespace) -> DubConfig:
    """The job's config from the parsed options; a bad value is one line naming its flag."""
    from core.config import DubConfig, cli_flag, validate_config

    values = {key: value for key, value in vars(args).items() if key in DubConfig.model_fields}
    if "video" not in values:
        raise InputError(f"no input video given (usage: {prog_name()} VIDEO --langs ja,en,ko)")
    if not values.get("langs"):
        raise InputError("no target languages given; use --langs, e.g. --langs ja,en,ko")
    return validate_config(values, name=cli_flag)


def disk_full(exc: BaseException, folders: tuple[Path, ...] = ()) -> bool:
    """ENOSPC anywhere in the exception chain, or a write failure on a folder with no space left
    (libsndfile reports a full disk only as an unspecified write error)."""
    import errno
    import shutil

    for folder in folders:
        probe = folder
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            if shutil.disk_usage(probe).free < 1 << 20:
                return True
        except OSError:
            pass
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return True
        if "no space left on device" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


INTERRUPTED = "error: interrupted; finished lines are cached and a re-run resumes from them"


def install_interrupt_handler() -> None:
    """Ctrl-C: tell the worker threads to start nothing new, then interrupt the main thread as usual."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum: int, frame: object) -> None:
        # Prefect's engine handles KeyboardInterrupt itself (it reports the run as crashed to its
        # server, which a terminal's Ctrl-C has just stopped too, and waits on it), so the handler
        # finishes the job here: no new line starts, one line is printed, the process leaves.
        CANCELLED.set()
        exit_now(130, INTERRUPTED)

    signal.signal(signal.SIGINT, interrupt)


def exit_now(code: int, last_line: str | None = None) -> NoReturn:
    """Leave at once after an interrupt: stop Prefect's temporary server (a terminal's Ctrl-C reaches it
    too, and Prefect's exit hooks would then wait on it), and skip the exit hooks that would flush run
    events to it. Every artefact is written atomically, so nothing half-written is left to trust.
    `last_line` is printed last: logging is switched off first and every handler's lock is held, so a
    task still finishing in another thread cannot log after it (a CI run caught one doing so)."""
    logging.disable(logging.CRITICAL)
    loggers = [
        logging.root,
        *(v for v in logging.root.manager.loggerDict.values() if isinstance(v, logging.Logger)),
    ]
    handlers = {handler for logger in loggers for handler in logger.handlers}
    for handler in handlers:
        handler.acquire()  # waits out a record being written now; none is written after
    try:
        from prefect.server.api.server import SubprocessASGIServer

        for server in list(SubprocessASGIServer._instances.values()):
            server.stop()
    except Exception:  # noqa: BLE001 - best effort on the way out
        pass
    sys.stdout.flush()
    if last_line is not None:
        print(last_line, file=sys.stderr)
    sys.stderr.flush()
    os._exit(code)


def start_temporary_server_quietly() -> None:
    """Without PREFECT_API_URL, Prefect starts a temporary server process on first use, writing to our
    terminal: its shutdown noise (uvicorn, SQLAlchemy tracebacks when the last run events of a failed
    job arrive as it stops) would follow the one-line error. Start it now with its stderr on /dev/null
    (--debug keeps it on the terminal); the flow then uses this instance (Prefect keeps one per process)."""
    try:
        from core.prefect_server import use_running_server

        if use_running_server():  # a server already up: no start, not even its 2.7 s import (issue 14)
            return
        from prefect.server.api.server import SubprocessASGIServer
        from prefect.settings import PREFECT_API_URL

        if PREFECT_API_URL.value():
            return
        server = SubprocessASGIServer()
        if server.running:
            return
        sys.stderr.flush()
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)  # the child inherits fd 2 as it is at fork time
            server.start()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
    except Exception:  # noqa: BLE001 - Prefect starts the server itself later, as usual
        return


FAILED_STATES = ("Failed", "Crashed", "Cancelled", "TimedOut")


class FailureChatter(logging.Filter):
    """Prefect's own account of a failure: "Task run failed with exception ...", "Encountered exception
    during execution ...", "Finished in state Failed(...)" (each at least twice per failure, once per task
    run and once for the flow run). The CLI prints the failure once, as its `error:` line; the records
    still reach the Prefect API (the UI shows them), --debug and --log-json."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("prefect"):
            return True
        if record.levelno >= logging.ERROR:
            return False
        message = record.getMessage()
        return not message.startswith(tuple(f"Finished in state {s}" for s in FAILED_STATES))


def console_logs_to_stdout() -> None:
    """What a terminal shows during a normal run (no --debug, no --log-json): progress on stdout (Prefect's
    run and task lines, our stage lines, library warnings through `logging`), Prefect's failure chatter
    nowhere, and stderr kept for the one last line, `error: ...`, so a failure reads as that line."""
    from flows.dask_worker import QUIET_ENV

    os.environ[QUIET_ENV] = "1"  # worker processes of a local Dask cluster do the same
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # and skip their start-up chatter
    logging.captureWarnings(True)  # warnings.warn from libraries: a log record, not a stderr write
    loggers = [
        logging.root,
        *(v for v in logging.root.manager.loggerDict.values() if isinstance(v, logging.Logger)),
    ]
    for handler in {h for logger in loggers for h in logger.handlers}:
        if not isinstance(handler, logging.StreamHandler) or isinstance(handler, logging.FileHandler):
            continue
        if handler.stream not in (sys.stderr, sys.__stderr__):
            continue
        handler.setStream(sys.stdout)
        console = getattr(handler, "console", None)  # Prefect's rich console keeps its own file
        if console is not None:
            console.file = sys.stdout
        if not any(isinstance(f, FailureChatter) for f in handler.filters):
            handler.addFilter(FailureChatter())


PREFECT_FIX = "set PREFECT_HOME to a folder you can write, or PREFECT_API_URL to a running Prefect server"


def check_prefect_home() -> None:
    """Prefect keeps its profiles, results and (for the temporary server a run starts without
    PREFECT_API_URL) its SQLite database under PREFECT_HOME: one line naming the path and the fix when it
    is not a writable folder, instead of a server that fails to start a minute later."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    folders = [("Prefect home", Path(settings.home).expanduser())]
    if not settings.api.url:
        url = settings.server.database.connection_url
        text = url.get_secret_value() if url is not None else ""
        if text.startswith("sqlite") and ":///" in text and ":memory:" not in text:
            database = Path(text.split(":///", 1)[1].split("?", 1)[0]).expanduser()
            folders.append((f"Prefect database {database} in", database.parent))
    for what, folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".qwen-dub-write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise InputError(f"{what} {folder} is not a writable folder ({reason}): {PREFECT_FIX}") from None


def share_rate_limits(config: DubConfig) -> None:
    """Worker processes share the DashScope account: its global rate limits on (models/pacing.py), and
    the Prefect API the workers must reach exported to them (the temporary server's address, when this
    process started one)."""
    from models.dashscope_common import Endpoint, api_key_from_env
    from models.pacing import share_account_limits
    from models.registry import translator_engine, tts_engine

    if not (tts_engine(config.tts).needs_key or translator_engine(config.translator).needs_key):
        return  # no request to an account
    try:
        from prefect.server.api.server import SubprocessASGIServer
        from prefect.settings import PREFECT_API_URL

        if not PREFECT_API_URL.value():
            server = SubprocessASGIServer()
            if not server.running:
                server.start()
            os.environ["PREFECT_API_URL"] = server.api_url  # inherited by the cluster's workers
        endpoint = Endpoint.for_region(config.region).http_base_url
        pacing = {"tts": (config.tts_rpm, config.concurrency), "mt": (config.mt_rpm, config.concurrency)}
        share_account_limits(api_key_from_env(), endpoint, pacing)
    except DubError:
        raise
    except Exception as exc:  # noqa: BLE001 - one line naming what could not be done
        raise ConfigError(
            "cannot set up the shared DashScope rate limit on the Prefect server "
            f"({type(exc).__name__}); set QWENDUB_TTS_RATE_LIMIT and QWENDUB_MT_RATE_LIMIT to limits you "
            "created (docs/operations.md), or use --task-runner thread"
        ) from None


def quiet_shutdown() -> None:
    """Prefect logs "Stopping temporary server" at exit, after our last line; the user's last line
    should be the result or the error."""
    logging.getLogger("prefect").setLevel(logging.WARNING)


@dataclass
class Invocation:
    """A job the command line has parsed and checked, ready for the flow."""

    config: DubConfig
    debug: bool = False
    runner: TaskRunner | None = None  # --task-runner / --dask-address; None: the flow's own
    environ: dict[str, str] | None = None  # the environment as the user gave it (the job's stamp records it)


def failure(exc: BaseException, debug: bool, folders: tuple[Path, ...] = ()) -> int:
    """One `error: ...` line on stderr for an exception; its exit code. --debug re-raises."""
    if isinstance(exc, KeyboardInterrupt | Cancelled):
        exit_now(130, INTERRUPTED)
    if debug:
        raise exc
    if isinstance(exc, DubError):
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if disk_full(exc, folders):
        print("error: no space left on device; free some space and re-run (finished work is kept)",
              file=sys.stderr)  # fmt: skip
        return 1
    if isinstance(exc, PermissionError):
        print(f"error: permission denied: {exc.filename or exc}", file=sys.stderr)
        return 1
    print(
        f"error: unexpected failure ({type(exc).__name__}); re-run with --debug for details", file=sys.stderr
    )
    return 1


def prepare(argv: list[str] | None = None) -> Invocation | int:
    """Everything before the flow: parse (answering --help and bad flags), --list-voices, the config and
    the checks (core/checks.py), the task runner, Prefect's logging and temporary server. An int is the
    exit code to leave with."""
    environ = dict(os.environ)  # before this process sets any variable of its own
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    if not debug:  # Prefect warns on import when it cannot create its home; check_prefect_home says it
        import warnings

        warnings.filterwarnings("ignore", message="Failed to create the Prefect home", category=UserWarning)
    install_interrupt_handler()
    try:
        if getattr(args, "markdown_options", False):
            print(markdown_options(), end="")
            return 0
        if getattr(args, "list_voices", False):
            print_voices(args)
            return 0
        config = config_from_args(args)
        if not getattr(args, "force", False) and print_if_up_to_date(config, environ):
            return 0
        runner = None
        kind, address = getattr(args, "task_runner", None), getattr(args, "dask_address", None)
        if kind or address:
            from flows.runners import make_task_runner

            try:
                runner = make_task_runner(kind, address)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        from core.checks import preflight

        preflight(config, before_loads=check_prefect_home)
        from flows.logs import configure_prefect_environment

        json_logs = bool(getattr(args, "log_json", False))
        configure_prefect_environment(debug=debug, json_logs=json_logs)
        if not debug:
            start_temporary_server_quietly()
        if not (debug or json_logs):
            console_logs_to_stdout()
        from flows.runners import uses_processes

        if uses_processes(kind, address) and not config.dry_run:
            share_rate_limits(config)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - one line, no traceback (see failure)
        return failure(exc, debug)
    return Invocation(config, debug, runner, environ)


def run(invocation: Invocation, flow: Flow[[DubConfig], DubResult]) -> int:
    """Run the prepared job with `flow` (flows/dub.py's `dub`) and print what it made."""
    config = invocation.config
    if invocation.runner is not None:
        flow = flow.with_options(task_runner=invocation.runner)  # type: ignore[arg-type]
    try:
        try:
            result = flow(config)
        finally:
            quiet_shutdown()
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - one line, no traceback (see failure)
        return failure(exc, invocation.debug, (config.out_dir, config.cache_dir))
    if result.video is None:
        from tasks.estimate import format_estimates

        print(format_estimates(result.estimates))
        print(f"estimate: {result.report}")
        return 0
    outputs = {
        "video": str(result.video),
        "report": str(result.report),
        "subtitles": {lang: str(path) for lang, path in result.subtitles.items()},
    }
    print_outputs(outputs)
    from core.job_stamp import record

    try:
        record(config, outputs, result.report, invocation.environ)
    except OSError as exc:  # the job is done; only its next re-run will not be instant
        logging.getLogger("qwen_dub").warning("could not record the job's stamp (%s)", type(exc).__name__)
    return 0


def print_outputs(outputs: dict[str, Any]) -> None:
    print(f"dubbed video: {outputs['video']}")
    print(f"report: {outputs['report']}")
    for lang, path in outputs.get("subtitles", {}).items():
        print(f"subtitles ({lang}): {path}")


def print_if_up_to_date(config: DubConfig, environ: dict[str, str]) -> bool:
    """A finished job whose inputs, edits, options, code and outputs are all as its last run left them
    (core/job_stamp.py): print its outputs and say so. Nothing is imported beyond the config's modules."""
    from core.job_stamp import up_to_date

    try:
        outputs = up_to_date(config, environ)
    except OSError:  # an unreadable input or job file: the run itself will say what is wrong
        return False
    if outputs is None:
        return False
    print_outputs(outputs)
    print("up to date: nothing changed since the last run (--force runs it again)")
    return True


def prepare_or_exit(argv: list[str] | None = None) -> Invocation:
    """`prepare`, leaving the process when there is nothing to run (flows/dub.py's main block)."""
    prepared = prepare(argv)
    if isinstance(prepared, int):
        raise SystemExit(prepared)
    return prepared


def main(argv: list[str] | None = None) -> int:
    """The `qwen-dub` console script and `python -m flows.cli`."""
    prepared = prepare(argv)
    if isinstance(prepared, int):
        return prepared
    from flows.dub import dub

    return run(prepared, dub)


if __name__ == "__main__":
    raise SystemExit(main())
