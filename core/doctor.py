"""What `qwen-dub doctor` checks: one Check per thing a job needs, each with a verdict and one short detail.

Verdicts: `ok`; `warn` (the job runs, but slower, later or with less: no GPU for the local route, a model
fetched mid-job, little disk); `FAIL` (the chosen route cannot run: a missing program or filter, no key,
a model missing while offline, an unwritable folder, an unreachable Prefect API). Nothing here prints a
secret: the key's presence is reported, never its value or length.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from models.store import ModelNeed, ModelSettings, model_status, required_models

Verdict = Literal["ok", "warn", "FAIL"]

# The ffmpeg filters and encoders the code runs (tasks/media.py: extract_audio, encode_audio, remux).
FFMPEG_FILTERS = ("apad", "atrim", "asplit", "aresample", "pan")
FFMPEG_ENCODERS = {"aac": "--audio-codec aac", "libopus": "--audio-codec opus"}
LOW_DISK_BYTES = 5_000_000_000  # a local-route model set is 5-20 GB; one job's intermediates ~1 GB/hour
FULL_DISK_BYTES = 500_000_000


@dataclass(frozen=True)
class Check:
    name: str
    verdict: Verdict
    detail: str

    def line(self) -> str:
        return f"{self.verdict:4}  {self.name}: {self.detail}"


@dataclass(frozen=True)
class DoctorOptions:
    models: ModelSettings
    langs: tuple[str, ...] = ()
    online: bool = False
    region: str = "intl"
    out: Path = Path("out")
    cache_dir: Path | None = None  # qwen-dub's clip cache (core/config.default_cache_dir)


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout


def _version(program: str) -> str:
    first = _run([program, "-hide_banner", "-version"]).splitlines()[0]
    match = re.search(r"version (\S+)", first)
    return match.group(1) if match else first.strip()


def check_ffmpeg() -> Check:
    path = shutil.which("ffmpeg")
    if path is None:
        return Check("ffmpeg", "FAIL", "not found on PATH (Debian/Ubuntu: apt-get install ffmpeg)")
    try:
        version = _version(path)
        filters = {line.split()[1] for line in _run([path, "-hide_banner", "-filters"]).splitlines()[1:]
                   if len(line.split()) > 2 and re.fullmatch(r"[.TSC|A-Z]{3}", line.split()[0])}  # fmt: skip
        encoders = {line.split()[1] for line in _run([path, "-hide_banner", "-encoders"]).splitlines()
                    if len(line.split()) > 1 and re.fullmatch(r"[VASFXBD.]{6}", line.split()[0])}  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        return Check("ffmpeg", "FAIL", f"{path} does not run ({type(exc).__name__})")
    missing = [f for f in FFMPEG_FILTERS if f not in filters]
    if missing:
        return Check("ffmpeg", "FAIL", f"{version} lacks the filters {', '.join(missing)}")
    if "aac" not in encoders:
        return Check("ffmpeg", "FAIL", f"{version} has no aac encoder")
    note = "" if "libopus" in encoders else f"; no libopus ({FFMPEG_ENCODERS['libopus']} unavailable)"
    return Check("ffmpeg", "warn" if note else "ok", f"{version}, filters {', '.join(FFMPEG_FILTERS)}{note}")


def check_ffprobe() -> Check:
    path = shutil.which("ffprobe")
    if path is None:
        return Check("ffprobe", "FAIL", "not found on PATH (it comes with ffmpeg)")
    try:
        return Check("ffprobe", "ok", _version(path))
    except (OSError, subprocess.SubprocessError) as exc:
        return Check("ffprobe", "FAIL", f"{path} does not run ({type(exc).__name__})")


def check_rubberband() -> Check:
    """Time-fitting uses Rubber Band in-process (audio/fit.py, pylibrb); the CLI is only for tests/benches."""
    try:
        import numpy as np
        import pylibrb

        stretcher = pylibrb.RubberBandStretcher(
            sample_rate=24_000,
            channels=1,
            options=pylibrb.Option.PROCESS_OFFLINE | pylibrb.Option.ENGINE_FINER,
        )
        stretcher.time_ratio = 1.25
        stretcher.study(np.zeros((1, 2400), dtype=np.float32), final=True)
    except Exception as exc:  # noqa: BLE001 - an import or library failure: the check's verdict
        return Check("rubberband", "FAIL", f"pylibrb unusable ({type(exc).__name__}: {str(exc)[:120]})")
    cli = "" if shutil.which("rubberband") else " (the rubberband program, used by tests, is absent)"
    return Check("rubberband", "warn" if cli else "ok", f"librubberband R3 via pylibrb{cli}")


def check_espeak() -> Check:
    path = shutil.which("espeak-ng")
    if path is None:
        return Check("espeak-ng", "warn", "not found: only the tests and benchmarks need it")
    return Check("espeak-ng", "ok", f"{path} (tests and benchmarks)")


def needs_key(models: ModelSettings) -> bool:
    from models.registry import translator_engine, tts_engine

    return tts_engine(models.tts).needs_key or translator_engine(models.translator).needs_key


def check_key(models: ModelSettings) -> Check:
    present = bool(os.environ.get("DASHSCOPE_API_KEY", "").strip())
    if not needs_key(models):
        return Check(
            "DASHSCOPE_API_KEY", "ok", ("set" if present else "not set") + "; this route does not need it"
        )
    if present:
        return Check("DASHSCOPE_API_KEY", "ok", "set (value not shown)")
    return Check("DASHSCOPE_API_KEY", "FAIL", "not set: the DashScope route needs it (export it)")


def check_key_online(region: str) -> Check:
    """One free authenticated call: list one page (one voice) of the account's enrolled voices."""
    from core.errors import DubError
    from core.retry import RetryPolicy
    from models.dashscope_voice_clone import VoiceEnrollment

    try:
        voices = VoiceEnrollment(region=region, retry=RetryPolicy(max_attempts=1)).list(page_size=1)
    except DubError as exc:
        return Check("DashScope API", "FAIL", str(exc))
    except Exception as exc:  # noqa: BLE001 - network failures from the SDK: the verdict, one line
        return Check("DashScope API", "FAIL", f"unreachable ({type(exc).__name__})")
    return Check(
        "DashScope API", "ok", f"key accepted ({region}; voice listing answered, {len(voices)} shown)"
    )


def check_gpu(models: ModelSettings) -> Check:
    from models.registry import LOCAL

    local = LOCAL in (models.tts, models.translator)
    try:
        import torch

        cuda = torch.cuda.is_available()
    except Exception as exc:  # noqa: BLE001 - a broken torch install
        return Check("CUDA", "FAIL", f"torch unusable ({type(exc).__name__})")
    if not cuda:
        if models.device == "cuda":
            return Check("CUDA", "FAIL", "--device cuda, but no CUDA GPU is visible")
        if local:
            return Check("CUDA", "warn", "no GPU: the local models run on the CPU (many times slower)")
        return Check("CUDA", "ok", "no GPU; this route runs speech models on the CPU")
    free, total = torch.cuda.mem_get_info()
    name = torch.cuda.get_device_name(0)
    return Check("CUDA", "ok", f"{name}, {free / 2**30:.1f} of {total / 2**30:.1f} GiB free")


def check_model(need: ModelNeed, online: bool) -> Check:
    state, detail = model_status(need, probe_hub=online)
    name = f"model {need.role}"
    if state in ("local", "bundled", "cached"):
        return Check(name, "ok", f"{need.name} {state} ({detail})")
    if state == "downloadable":
        return Check(name, "warn", f"{need.name} {detail}; fetch it now: {need.fix}")
    return Check(name, "FAIL", f"{need.name} missing ({detail}); fix: {need.fix}")


def _existing_ancestor(path: Path) -> Path:
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_folder(label: str, folder: Path) -> Check:
    """Writable (or creatable) and with room: where the job writes."""
    base = _existing_ancestor(folder)
    if not base.is_dir():
        return Check(f"disk {label}", "FAIL", f"{folder}: {base} is not a folder")
    if not os.access(base, os.R_OK | os.W_OK | os.X_OK):
        return Check(f"disk {label}", "FAIL", f"{folder}: {base} is not readable and writable by this user")
    free = shutil.disk_usage(base).free
    detail = f"{folder}, {free / 1e9:.1f} GB free"
    if free < FULL_DISK_BYTES:
        return Check(f"disk {label}", "FAIL", f"{detail}: full")
    return Check(f"disk {label}", "warn" if free < LOW_DISK_BYTES else "ok", detail)


def check_prefect() -> Check:
    url = os.environ.get("PREFECT_API_URL", "").strip()
    if not url:
        try:
            from prefect.settings import PREFECT_API_URL, PREFECT_HOME

            url = str(PREFECT_API_URL.value() or "")
            home = Path(PREFECT_HOME.value()).expanduser()
        except Exception as exc:  # noqa: BLE001 - an unreadable profile: the verdict, one line
            return Check(
                "Prefect API", "FAIL", f"settings unreadable ({type(exc).__name__}: {str(exc)[:120]})"
            )
        if not url:
            base = _existing_ancestor(home)
            if not os.access(base, os.W_OK | os.X_OK):
                return Check(
                    "Prefect API",
                    "FAIL",
                    f"temporary server per run, but PREFECT_HOME {home} is not writable",
                )
            return Check("Prefect API", "ok", f"temporary local server per run (database under {home})")
    import requests

    try:
        response = requests.get(url.rstrip("/") + "/health", timeout=5)
    except requests.RequestException as exc:
        return Check("Prefect API", "FAIL", f"{url} unreachable ({type(exc).__name__})")
    if response.status_code != 200:
        return Check("Prefect API", "FAIL", f"{url}/health answered HTTP {response.status_code}")
    return Check("Prefect API", "ok", f"{url} (healthy)")


def check_languages(langs: tuple[str, ...]) -> Check:
    from core.errors import ConfigError
    from core.languages import get_language

    try:
        names = [get_language(code).name for code in langs]
    except ConfigError as exc:
        return Check("languages", "FAIL", str(exc))
    return Check("languages", "ok", ", ".join(names))


def run_checks(options: DoctorOptions) -> Iterator[Check]:
    """Every check for the chosen route, cheapest first, each yielded as soon as it is known."""
    from core.config import default_cache_dir
    from core.errors import DubError

    simple: list[Callable[[], Check]] = [check_ffmpeg, check_ffprobe, check_rubberband, check_espeak]
    for check in simple:
        yield check()
    if options.langs:
        yield check_languages(options.langs)
    key = check_key(options.models)
    yield key
    if options.online and needs_key(options.models) and key.verdict == "ok":
        yield check_key_online(options.region)
    yield check_gpu(options.models)
    try:
        needs = required_models(options.models)
    except DubError as exc:
        yield Check("models", "FAIL", str(exc))
        needs = []
    for need in needs:
        yield check_model(need, options.online)
    from huggingface_hub import constants

    yield check_folder("cache", options.cache_dir or default_cache_dir())
    yield check_folder("models", Path(constants.HF_HUB_CACHE))
    yield check_folder("output", options.out)
    yield check_prefect()
