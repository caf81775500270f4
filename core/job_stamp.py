"""A finished job's stamp: what it was made from, so that re-running an unchanged job returns at once.

Issue 14 asks a re-run of a finished job to cost at most 10 % of the first run. Even against a running
Prefect server a re-run costs ~3.5 s on the sample (importing Prefect, torch and the engines, opening the
flow run, re-reading every cached clip and re-encoding nothing) against a ~12 s first run. The CLI
instead compares this stamp before importing any of that (the parser and the config import in ~0.2 s) and,
when nothing changed, prints the outputs it made and leaves: `make` for a dub.

The stamp is deliberately broad: a false "up to date" would hide a change the user asked for, a false
"changed" costs one ordinary (cached, free) re-run. It holds
- the whole job config (every option, paths resolved),
- each input file the config names (video, plan, subtitles, glossary, cast registry, clone reference,
  local model folders): size and modification time, as `make` does (hashing a two-hour video would cost
  seconds; the clip and translation caches still key on content whenever the flow runs),
- every file at the top of the job folder (the plan and translations a user edits, the outputs): small
  files by content, large ones by size and time, and the set of names (a deleted or added file counts),
- this checkout's code (a digest of the project's .py files) and the installed distributions' versions,
- the environment variables that steer a job (QWENDUB_*, DASHSCOPE_* hosts, CUDA_VISIBLE_DEVICES) and
  the host name (`auto` choices such as the ASR model depend on the machine).
It is never written for a job that must run again anyway: a dry run, a job with a cloned voice (consent
is checked on every run: a revoked consent must stop the job), or one with a clip the length guard
flagged (the next run retries it). `--force` ignores it.
"""

from __future__ import annotations

import hashlib
import json
import os
import site
import socket
import sysconfig
from collections.abc import Mapping
from importlib.metadata import distributions
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.files import write_json_atomic

if TYPE_CHECKING:
    from core.config import DubConfig

STAMP_NAME = "done.json"  # in <job>/work/
STAMP_VERSION = 1
SMALL_FILE_BYTES = 8 << 20  # top-level job files up to this size are compared by content
PROJECT_PACKAGES = ("core", "text", "audio", "cloning", "models", "tasks", "flows", "webstudio")
ENV_PREFIXES = ("QWENDUB_", "DASHSCOPE_HTTP", "DASHSCOPE_COMPATIBLE", "DASHSCOPE_WEBSOCKET", "HF_HUB_")
ENV_NAMES = ("CUDA_VISIBLE_DEVICES",)
ROOT = Path(__file__).resolve().parent.parent


def stamp_path(config: DubConfig) -> Path:
    return config.out_dir / "work" / STAMP_NAME


def _file_state(path: Path) -> list[Any]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _path_state(path: Path) -> Any:
    """A named input: a file's size and time; a folder's files' (e.g. a local model); absent: None."""
    if path.is_file():
        return _file_state(path)
    if path.is_dir():
        return sorted(
            [str(p.relative_to(path)), *_file_state(p)] for p in path.rglob("*") if p.is_file()
        )  # fmt: skip
    return None


def _config_inputs(config: DubConfig) -> dict[str, Any]:
    """Every option whose value names an existing file or folder (paths, and model ids given as paths)."""
    inputs: dict[str, Any] = {}
    for name, value in config.model_dump().items():
        if isinstance(value, Path) or (isinstance(value, str) and os.sep in value):
            path = Path(value).expanduser()
            if name not in ("out", "cache_dir", "consent_dir") and path.exists():
                inputs[name] = [str(path.resolve()), _path_state(path)]
    return inputs


def _job_files(out_dir: Path) -> dict[str, Any]:
    files: dict[str, Any] = {}
    for path in sorted(out_dir.iterdir()) if out_dir.is_dir() else []:
        if not path.is_file():
            continue
        size = path.stat().st_size
        if size <= SMALL_FILE_BYTES:
            files[path.name] = ["sha256", hashlib.sha256(path.read_bytes()).hexdigest()]
        else:
            files[path.name] = ["stat", *_file_state(path)]
    return files


def _code_digest() -> str:
    """This checkout's Python code: any change to it may change what a job makes."""
    digest = hashlib.sha256()
    for package in PROJECT_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _site_dirs() -> list[str]:
    """Where distributions are installed, not sys.path: importing setuptools (faster-whisper's imports do,
    in the flow) appends setuptools/_vendor to sys.path, whose vendored copies made the stamp written
    after a transcribing run differ from the one computed before the next run (every re-run ran)."""
    paths = sysconfig.get_paths()
    dirs = [paths["purelib"], paths["platlib"], *site.getsitepackages()]
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return sorted({d for d in dirs if Path(d).is_dir()})


def _environment(environ: Mapping[str, str] | None) -> dict[str, Any]:
    """`environ`: the environment the user started the command with (the CLI sets variables of its own
    for Prefect and its workers later; those must not make the next run look different)."""
    given = os.environ if environ is None else environ
    env = {k: v for k, v in given.items() if k.startswith(ENV_PREFIXES) or k in ENV_NAMES}
    versions = sorted({f"{d.metadata['Name']}=={d.version}" for d in distributions(path=_site_dirs())})
    return {"host": socket.gethostname(), "env": env, "distributions": versions}


def fingerprint(config: DubConfig, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Everything the job's outputs depend on, as recorded after a run and compared before the next."""
    options = json.loads(config.model_dump_json(exclude={"adopt_proposal"}))
    return {
        "version": STAMP_VERSION,
        "config": options,
        "inputs": _config_inputs(config),
        "job_files": _job_files(config.out_dir),
        "code": _code_digest(),
        **_environment(environ),
    }


def may_stamp(config: DubConfig) -> bool:
    """Jobs that run again every time whatever the stamp says (see the module's docstring)."""
    cloned = bool(config.clone or config.clone_use or config.clone_ref)
    return not (config.dry_run or config.adopt_proposal or cloned)


def record(
    config: DubConfig, outputs: dict[str, Any], report: Path, environ: Mapping[str, str] | None = None
) -> bool:
    """After a finished run: write the stamp (or remove a stale one). False when this job may not skip
    its next run (see may_stamp; a cloned voice or a guard-flagged clip named in the report)."""
    path = stamp_path(config)
    path.unlink(missing_ok=True)
    if not may_stamp(config) or _must_run_again(report):
        return False
    stamp = {"fingerprint": fingerprint(config, environ), "outputs": outputs}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, stamp)
    return True


def _must_run_again(report: Path) -> bool:
    """A report naming a cloned voice (consent is re-checked every run) or a guard-flagged clip."""
    try:
        data = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    tracks = data.get("tracks", {}) if isinstance(data, dict) else {}
    flagged = any(
        float((t.get("synthesis") or {}).get("guard_flagged", 0) or 0) > 0
        for t in tracks.values()
        if isinstance(t, dict)
    )  # fmt: skip
    speakers = data.get("speakers") or {}
    cloned = any(isinstance(s, dict) and s.get("cloned") for s in speakers.values())
    disclosure = str(data.get("ai_disclosure", ""))
    return flagged or cloned or "cloned from" in disclosure or bool(data.get("clone"))


def up_to_date(config: DubConfig, environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The outputs recorded by the last run when nothing it depends on changed since; else None."""
    if not may_stamp(config):
        return None
    try:
        stamp = json.loads(stamp_path(config).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(stamp, dict) or stamp.get("fingerprint") != fingerprint(config, environ):
        return None
    outputs = stamp.get("outputs")
    return outputs if isinstance(outputs, dict) else None
