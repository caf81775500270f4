"""Source separation stage: vocals (for transcription) and the background to dub over.

`none` keeps the original audio as "vocals" and dubs over silence. `htdemucs` (demucs) lands in its
own change; until then choosing it fails before any work with one clear line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import task

from models.errors import NotImplementedRouteError
from tasks.media import STAGE
from tasks.progress import stage_logger


@dataclass(frozen=True)
class Stems:
    vocals: Path  # what transcription and onset detection read
    background: Path | None  # None: dub over silence
    key: str


def check_separator(name: str) -> None:
    if name != "none":
        raise NotImplementedRouteError(
            f"--separator {name} is not available yet (demucs separation is being built); use --separator none"
        )


@task(name="separate", **STAGE)
def separate(audio: Path, audio_key: str, separator: str) -> Stems:
    check_separator(separator)
    stage_logger().info("separation separator=none background=silence")
    return Stems(vocals=audio, background=None, key=audio_key)
