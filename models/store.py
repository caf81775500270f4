"""Which model weights a configuration needs, whether each is ready, and fetching them ahead of a job.

Every downloadable model the project uses lives on the Hugging Face hub and is cached by huggingface_hub
(HF_HUB_CACHE, default ~/.cache/huggingface/hub), which every loader reads through:
- faster-whisper names (`small`, `large-v3`) -> `Systran/faster-whisper-<name>`
  (faster_whisper.utils._MODELS), only the files faster-whisper itself fetches;
- demucs names -> `adefossez/<repo>`: `<name>.yaml` and one `<sig>.safetensors` per model of the bag
  (demucs/hf.py; the legacy AWS download is used only when the hub fails);
- Qwen3-TTS (`Qwen/Qwen3-TTS-12Hz-<size>-<Mode>`, speech tokenizer inside) and the local translator's chat
  model: whole repositories, as transformers loads them;
- the speaker encoder (resemblyzer) ships inside its wheel: nothing to fetch.
A local folder given for any of them is used as it is and never fetched.

`qwen-dub models pull --to DIR` writes DIR in the hub cache's own layout: copy it to an offline machine and
run jobs there with HF_HUB_CACHE=DIR HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from core.errors import ConfigError

Status = Literal["local", "bundled", "cached", "downloadable", "missing"]
WHISPER_FILES = ("config.json", "preprocessor_config.json", "model.bin", "tokenizer.json", "vocabulary.*")


@dataclass(frozen=True)
class ModelNeed:
    """One model a configuration loads: a hub repository (some or all of its files) or a local folder."""

    role: str  # what it does, as the user knows it: "speech recognition", "separation", ...
    name: str  # the hub id, or the folder
    pull_args: tuple[str, ...] = ()  # the `qwen-dub models pull` arguments that fetch it
    patterns: tuple[str, ...] = ()  # files of the repo the loader may read; () = the whole repository
    required: tuple[str, ...] = ("config.json",)  # files without which the loader fails
    local: Path | None = None
    bundled: bool = False
    demucs_name: str | None = None  # a demucs bag: its .yaml names the .safetensors files

    @property
    def fix(self) -> str:
        return " ".join(("qwen-dub models pull", *self.pull_args))


@dataclass(frozen=True)
class ModelSettings:
    """The part of a job's configuration that decides its models (the flags of the same names)."""

    tts: str = "api"
    translator: str = "api"
    asr_model: str = "auto"
    separator: str = "htdemucs"
    demucs_model: str = "htdemucs"
    tts_size: str = "1.7B"
    tts_local_model: str | None = None
    voice_design: bool = False
    translator_model: str | None = None
    device: str = "auto"
    diarizer: str = "embedding"
    extra: dict[str, str] = field(default_factory=dict)


def _cuda(device: str) -> bool:
    if device != "auto":
        return device == "cuda"
    from models.whisper_asr import cuda_available

    return cuda_available()


def _local_folder(value: str, hub_ids: bool = True) -> Path | None:
    """The folder `value` names, or None for a hub name. With `hub_ids`, `org/name` that is no existing
    folder is a hub id (transformers' rule); faster-whisper and demucs take any path with a separator as a
    folder (models/whisper_asr.py, models/demucs_separator.py)."""
    path = Path(value).expanduser()
    if path.exists() or value.startswith((".", "~", os.sep)):
        return path
    if os.sep in value and not (hub_ids and value.count("/") == 1):
        return path
    return None


def required_models(settings: ModelSettings) -> list[ModelNeed]:
    """Every model a job with these settings loads, in the order the job loads them."""
    from models.registry import LOCAL

    needs: list[ModelNeed] = []
    args: tuple[str, ...]
    if settings.separator != "none":
        folder = _local_folder(settings.demucs_model, hub_ids=False)
        if folder is not None:
            needs.append(ModelNeed("separation (demucs)", str(folder), local=folder))
        else:
            from demucs.hf import DEFAULT_NAMESPACE, hf_repo_name

            namespace, _, bare = settings.demucs_model.rpartition("/")
            repo = f"{namespace or DEFAULT_NAMESPACE}/{hf_repo_name(bare)}"
            args = () if settings.demucs_model == "htdemucs" else ("--demucs-model", settings.demucs_model)
            needs.append(
                ModelNeed(
                    "separation (demucs)", repo, args, (f"{bare}.yaml",), (f"{bare}.yaml",), demucs_name=bare
                )
            )

    from models.whisper_asr import CPU_DEFAULT_MODEL, GPU_DEFAULT_MODEL

    asr = settings.asr_model
    if asr == "auto":
        asr = GPU_DEFAULT_MODEL if _cuda(settings.device) else CPU_DEFAULT_MODEL
    folder = _local_folder(asr, hub_ids=False)
    if folder is not None:
        needs.append(ModelNeed("speech recognition (faster-whisper)", str(folder), local=folder))
    else:
        from faster_whisper.utils import _MODELS

        repo = _MODELS.get(asr)
        if repo is None:
            raise ConfigError(f"--asr-model {asr}: unknown faster-whisper model; known: {', '.join(_MODELS)}")
        needs.append(
            ModelNeed(
                "speech recognition (faster-whisper)",
                repo,
                ("--asr-model", asr),
                WHISPER_FILES,
                required=("model.bin", "config.json"),
            )
        )

    if settings.translator == LOCAL:
        from models.local_translator import DEFAULT_CPU_MODEL, DEFAULT_GPU_MODEL

        model = settings.translator_model or (
            DEFAULT_GPU_MODEL if _cuda(settings.device) else DEFAULT_CPU_MODEL
        )
        args = ("--translator", LOCAL) + (("--translator-model", model) if settings.translator_model else ())
        needs.append(_hub_or_folder("translation (local chat model)", model, args))

    if settings.tts == LOCAL:
        from models.qwen_local_tts import default_model_id

        mode = "voice_design" if settings.voice_design else "custom_voice"
        model = settings.tts_local_model or default_model_id(mode, settings.tts_size)
        args = ("--tts", LOCAL) + (
            ("--tts-local-model", model) if settings.tts_local_model else ("--tts-size", settings.tts_size)
        )
        needs.append(_hub_or_folder("speech synthesis (Qwen3-TTS)", model, args))

    if settings.diarizer == "embedding":
        needs.append(ModelNeed("speaker encoder (resemblyzer)", "resemblyzer/pretrained.pt", bundled=True))
    return needs


def _hub_or_folder(role: str, model: str, args: tuple[str, ...]) -> ModelNeed:
    folder = _local_folder(model)
    return ModelNeed(role, str(folder), local=folder) if folder is not None else ModelNeed(role, model, args)


def offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _cached_snapshot(need: ModelNeed, cache_dir: Path | None) -> Path | None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(
            snapshot_download(
                need.name,
                allow_patterns=list(need.patterns) or None,
                cache_dir=cache_dir,
                local_files_only=True,
            )
        )
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
    return folder if any(folder.iterdir()) else None


def cached_files_missing(need: ModelNeed, cache_dir: Path | None = None) -> list[str] | None:
    """None when the repo has no cached snapshot; else the loader's files missing from it."""
    folder = _cached_snapshot(need, cache_dir)
    if folder is None:
        return None
    present = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    wanted = list(need.required)
    if need.demucs_name is not None:
        import yaml

        bag = folder / f"{need.demucs_name}.yaml"
        if not bag.is_file():
            return [bag.name]
        wanted += [f"{sig}.safetensors" for sig in (yaml.safe_load(bag.read_text()) or {}).get("models", [])]
    return [p for p in wanted if not any(fnmatch.fnmatch(f, p) for f in present)]


def model_status(
    need: ModelNeed, cache_dir: Path | None = None, probe_hub: bool = True
) -> tuple[Status, str]:
    """Where a model stands, with a short detail for the doctor's line."""
    if need.bundled:
        return "bundled", "inside its Python package"
    if need.local is not None:
        if need.local.is_dir() and any(need.local.iterdir()):
            return "local", f"folder {need.local}"
        return "missing", f"folder {need.local} is missing or empty"
    missing = cached_files_missing(need, cache_dir)
    if missing == []:
        return "cached", "in the hub cache"
    if offline():
        return "missing", "not cached and HF_HUB_OFFLINE is set"
    if not probe_hub:
        return "downloadable", "not cached; fetched on first use"
    try:
        plan_files(need, cache_dir)
    except Exception as exc:  # noqa: BLE001 - any hub failure: not downloadable from here, say why
        return "missing", f"not cached and the hub does not serve it ({type(exc).__name__})"
    return "downloadable", "not cached; the hub serves it"


def plan_files(need: ModelNeed, cache_dir: Path | None = None) -> list[tuple[str, int]]:
    """The repo files the loader reads, with their sizes in bytes (asks the hub; a demucs bag's .yaml is
    fetched to learn its model files)."""
    from huggingface_hub import HfApi, hf_hub_download

    info = HfApi().model_info(need.name, files_metadata=True)
    sizes = {s.rfilename: int(s.size or 0) for s in info.siblings or []}
    patterns, required = list(need.patterns), list(need.required)
    if need.demucs_name is not None:
        import yaml

        bag = Path(hf_hub_download(need.name, f"{need.demucs_name}.yaml", cache_dir=cache_dir))
        sigs = [f"{sig}.safetensors" for sig in (yaml.safe_load(bag.read_text()) or {}).get("models", [])]
        patterns, required = patterns + sigs, required + sigs
    chosen = [
        (name, size) for name, size in sorted(sizes.items()) if not patterns or _matches(name, patterns)
    ]
    for name in required:
        if name not in sizes:
            raise ConfigError(f"model {need.name} on the hub has no {name}: not a model this loader reads")
    return chosen


def _plan_or_explain(need: ModelNeed, cache_dir: Path | None) -> list[tuple[str, int]]:
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        return plan_files(need, cache_dir)
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise ConfigError(f"the hub does not serve {need.name} ({need.role}): repository not found") from None
    except EntryNotFoundError as exc:
        raise ConfigError(f"the hub's {need.name} ({need.role}) lacks a file: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def fetch_file(need: ModelNeed, filename: str, cache_dir: Path | None) -> Path:
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(need.name, filename, cache_dir=cache_dir))


def pull(
    needs: Sequence[ModelNeed],
    cache_dir: Path | None,
    on_plan: Callable[[list[tuple[ModelNeed, list[tuple[str, int]]]]], None] = lambda plan: None,
    on_file: Callable[[ModelNeed, str, int], None] = lambda need, name, size: None,
) -> list[Path]:
    """Fetch every hub model of `needs` into `cache_dir` (None: the hub cache). The whole plan (files and
    sizes) is known, and reported through `on_plan`, before the first weight is fetched."""
    plan = [
        (need, _plan_or_explain(need, cache_dir)) for need in needs if need.local is None and not need.bundled
    ]
    on_plan(plan)
    folders: list[Path] = []
    for need, files in plan:
        for name, size in files:
            fetch_file(need, name, cache_dir)
            on_file(need, name, size)
        folder = _cached_snapshot(need, cache_dir)
        if folder is not None:
            folders.append(folder)
    return folders
