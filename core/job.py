"""Where a job's files live. Everything a user may read or edit sits at the top of the job folder;
intermediate files sit in work/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class JobPaths:
    root: Path
    name: str
    container: str = "mkv"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def audio(self) -> Path:
        return self.work / "audio.wav"

    @property
    def analysis(self) -> Path:
        return self.work / "analysis.wav"

    @property
    def clone_reference(self) -> Path:
        return self.work / "clone_reference.wav"

    @property
    def vocals(self) -> Path:
        return self.work / "vocals.wav"

    @property
    def background(self) -> Path:
        return self.work / "background.wav"

    @property
    def transcript(self) -> Path:
        return self.work / "transcript.json"

    @property
    def segments(self) -> Path:
        return self.root / "segments.json"

    def lines(self, lang: str) -> Path:
        return self.root / f"lines.{lang}.json"

    def clips_dir(self, lang: str) -> Path:
        return self.work / "clips" / lang

    def clips_manifest(self, lang: str) -> Path:
        return self.work / f"clips.{lang}.json"

    def dub_audio(self, lang: str) -> Path:
        return self.work / f"dub.{lang}.mka"

    def verify(self, lang: str) -> Path:
        return self.work / f"verify.{lang}.json"

    def srt(self, lang: str) -> Path:
        return self.root / f"{self.name}.{lang}.srt"

    def vtt(self, lang: str) -> Path:
        return self.root / f"{self.name}.{lang}.vtt"

    @property
    def estimate(self) -> Path:
        return self.root / "estimate.json"

    def stem(self, lang: str) -> Path:
        return self.root / f"{self.name}.{lang}.dub.wav"

    def single(self, lang: str) -> Path:
        return self.root / f"{self.name}.{lang}.{self.container}"

    @property
    def run_config(self) -> Path:
        """The options of the job's last run (DubConfig as JSON): what the studio re-dubs with."""
        return self.work / "config.json"

    @property
    def report(self) -> Path:
        return self.root / "report.json"

    @property
    def final(self) -> Path:
        return self.root / f"{self.name}.dubbed.{self.container}"
