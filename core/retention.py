"""Retention: removing a job's intermediate audio and the cached clips it used, and an age policy for the
clip cache. Both report what they freed (files and bytes). Deliverables (the dubbed videos, stems, subtitles,
report.json, segments.json and lines.*.json) are never touched: only audio under <job>/work and clip cache
entries.

A job's cached clips are found through its clip links (<job>/work/clips/<lang>/NNNN.wav are hard links to
cache entries, or copies across file systems): a cache entry whose audio is the same file (same inode) or
has the same content as a job's clip is that job's. A cache entry is deleted metadata first (an entry
without metadata is never trusted, see core/clip_cache.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from core.files import sha256_file

AUDIO_SUFFIXES = frozenset({".wav", ".mka", ".flac", ".mp3", ".m4a", ".opus", ".ogg", ".aac", ".pt"})


@dataclass
class Freed:
    files: list[Path] = field(default_factory=list)
    bytes: int = 0
    problems: list[str] = field(default_factory=list)  # what could not be removed, and why

    def remove(self, path: Path) -> None:
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            self.problems.append(f"{path}: {exc.strerror or exc}")
            return
        self.files.append(path)
        self.bytes += size

    def line(self, what: str) -> str:
        return f"{what}: {len(self.files)} file(s), {self.bytes / 1e6:.1f} MB freed"


def _cache_entries(cache_dir: Path) -> list[Path]:
    root = Path(cache_dir) / "clips"
    return sorted(root.glob("*/*.wav")) if root.is_dir() else []


def _remove_entry(wav: Path, freed: Freed) -> None:
    freed.remove(wav.with_suffix(".json"))  # the metadata first: what is left is never trusted
    freed.remove(wav)


def job_clip_entries(job: Path, cache_dir: Path) -> list[Path]:
    """The cache entries (audio paths) the job's clip links are."""
    links = sorted((Path(job) / "work" / "clips").rglob("*.wav"))
    if not links:
        return []
    inodes = set()
    sizes: dict[int, list[Path]] = {}
    for link in links:
        stat = link.stat()
        inodes.add((stat.st_dev, stat.st_ino))
        sizes.setdefault(stat.st_size, []).append(link)
    digests: dict[int, set[str]] = {}
    found = []
    for wav in _cache_entries(cache_dir):
        stat = wav.stat()
        if (stat.st_dev, stat.st_ino) in inodes:
            found.append(wav)
        elif stat.st_size in sizes:  # a copy (across file systems): same content
            if stat.st_size not in digests:
                digests[stat.st_size] = {sha256_file(p) for p in sizes[stat.st_size]}
            if sha256_file(wav) in digests[stat.st_size]:
                found.append(wav)
    return found


def clean_job(job: Path, cache_dir: Path | None) -> tuple[Freed, Freed]:
    """Remove the job's intermediate audio (every audio file under <job>/work) and, with cache_dir, the
    cache entries of its clips. Returns (job folder, cache) freed."""
    job = Path(job)
    cache = Freed()
    if cache_dir is not None:
        for wav in job_clip_entries(job, cache_dir):
            _remove_entry(wav, cache)
    work = Freed()
    if (job / "work").is_dir():
        for path in sorted((job / "work").rglob("*")):
            if path.is_file() and path.suffix.lower() in AUDIO_SUFFIXES:
                work.remove(path)
    return work, cache


def expire_cache(cache_dir: Path, keep_days: float, now: float | None = None) -> Freed:
    """Delete clip cache entries made more than keep_days ago (by their metadata's modification time)."""
    if keep_days < 0:
        raise ValueError("--keep-days must not be negative")
    limit = (time.time() if now is None else now) - keep_days * 86_400
    freed = Freed()
    for wav in _cache_entries(cache_dir):
        meta = wav.with_suffix(".json")
        try:
            made = meta.stat().st_mtime
        except FileNotFoundError:
            made = wav.stat().st_mtime  # an entry never completed
        if made < limit:
            _remove_entry(wav, freed)
    return freed
