"""Source separation stage: vocals (for transcription and clone references) and the background to dub
over.

`htdemucs`: demucs two-stem split (models/demucs_separator.py), streamed in chunks so memory does not
grow with the film's length; vocals and background are float WAVs at the source's rate and layout,
written atomically and reused while the input and the separation settings are unchanged.
`none`: the original audio stands in for the vocals and the dub goes over silence (the original track
stays untouched in the output video).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
from prefect import task

from core.errors import ConfigError
from core.files import atomic_path, content_key, invalidate, is_fresh, mark_fresh
from core.gpu import release_gpu_models
from core.progress import StageProgress, stage_logger
from models.base import ProgressCallback, Separator
from models.demucs_separator import (
    DEFAULT_CHUNK_SECONDS,
    DEFAULT_MODEL,
    DEFAULT_OVERLAP,
    DEFAULT_SHIFTS,
    DemucsSeparator,
)
from tasks.media import STAGE

SEPARATORS = ("htdemucs", "none")


@dataclass(frozen=True)
class Stems:
    vocals: Path  # what transcription and onset detection read
    background: Path | None  # None: dub over silence
    key: str


def build_separator(
    name: str,
    *,
    model: str = DEFAULT_MODEL,
    model_dir: Path | None = None,
    device: str = "auto",
    shifts: int = DEFAULT_SHIFTS,
    overlap: float = DEFAULT_OVERLAP,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
) -> DemucsSeparator | None:
    """The engine for `--separator NAME` (None for `none`); validates every option, loads nothing."""
    if name == "none":
        return None
    if name != "htdemucs":
        raise ConfigError(f"unknown separator {name!r} (choose {' or '.join(SEPARATORS)})")
    return DemucsSeparator(
        model, model_dir, device=device, shifts=shifts, overlap=overlap, chunk_seconds=chunk_seconds
    )


def check_separator(
    name: str,
    *,
    model: str = DEFAULT_MODEL,
    model_dir: Path | None = None,
    device: str = "auto",
    shifts: int = DEFAULT_SHIFTS,
    overlap: float = DEFAULT_OVERLAP,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    load: bool = False,
) -> None:
    """Preflight: options valid and the model findable; with `load=True` the model is loaded (and
    downloaded on first use) now, so an offline machine fails before any work. The loaded model stays
    cached in the process for the stage."""
    engine = build_separator(
        name, model=model, model_dir=model_dir, device=device, shifts=shifts, overlap=overlap,
        chunk_seconds=chunk_seconds,
    )  # fmt: skip
    if engine is not None and load:
        engine.load()


def separation_key(audio_key: str, engine: Separator) -> str:
    return content_key("separate-v1", audio_key, engine.name, engine.identity())


def run_separation(
    engine: Separator,
    audio: Path,
    audio_key: str,
    vocals_path: Path,
    background_path: Path,
    make_progress: Callable[[], ProgressCallback] | None = None,
) -> Stems:
    """Separate unless both stems are fresh for this input and these settings; outputs appear
    atomically and only then are marked fresh. `make_progress` is called only when work starts."""
    key = separation_key(audio_key, engine)
    log = stage_logger()
    if is_fresh(vocals_path, key) and is_fresh(background_path, key):
        log.info("separation cached separator=%s key=%s", engine.name, key[:12])
        return Stems(vocals=vocals_path, background=background_path, key=key)
    # A crash between the two renames below must not leave an old sidecar vouching for a new file.
    invalidate(vocals_path)
    invalidate(background_path)
    callback = None if make_progress is None else make_progress()
    with atomic_path(vocals_path) as vocals_tmp, atomic_path(background_path) as background_tmp:
        engine.separate(audio, vocals_tmp, background_tmp, callback)
    mark_fresh(vocals_path, key)
    mark_fresh(background_path, key)
    return Stems(vocals=vocals_path, background=background_path, key=key)


@task(name="separate", **STAGE)
def separate(
    audio: Path,
    audio_key: str,
    separator: str,
    *,
    vocals_path: Path | None = None,
    background_path: Path | None = None,
    model: str = DEFAULT_MODEL,
    model_dir: Path | None = None,
    device: str = "auto",
    shifts: int = DEFAULT_SHIFTS,
    overlap: float = DEFAULT_OVERLAP,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
) -> Stems:
    """Stems of the extracted audio. Output paths default to vocals.wav / background.wav beside it
    (the job's work/ folder, as JobPaths.vocals / JobPaths.background)."""
    log = stage_logger()
    engine = build_separator(
        separator, model=model, model_dir=model_dir, device=device, shifts=shifts, overlap=overlap,
        chunk_seconds=chunk_seconds,
    )  # fmt: skip
    if engine is None:
        log.info("separation separator=none background=silence")
        return Stems(vocals=audio, background=None, key=audio_key)
    vocals_path = vocals_path or audio.parent / "vocals.wav"
    background_path = background_path or audio.parent / "background.wav"

    def make_progress() -> ProgressCallback:
        progress = StageProgress("separate", sf.info(str(audio)).duration, unit="s")
        return lambda done, total: progress.set(done, total)

    stems = run_separation(engine, audio, audio_key, vocals_path, background_path, make_progress)
    run = engine.last_run
    if run:  # the model ran (not a cached result): give its GPU memory back before recognition loads
        from models.demucs_separator import load_model

        release_gpu_models(load_model.cache_clear, device=str(run["device"]))
    if run:
        log.info(
            "separated separator=htdemucs model=%s device=%s shifts=%d overlap=%.2f chunks=%d audio_s=%.1f "
            "seconds=%.1f rtf=%.2f",
            engine.ref.name, run["device"], engine.shifts, engine.overlap, run["chunks"], run["audio_s"],
            run["seconds"], run["rtf"],
        )  # fmt: skip
    return stems
