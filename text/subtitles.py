"""Subtitles timed to the dub: SRT (sidecar and soft track) and WebVTT sidecars."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import srt

from core.files import write_bytes_atomic

MIN_CUE_S = 0.8  # shorter cues cannot be read
LINE_CHARS = 42  # Netflix/BBC guideline for Latin scripts; CJK uses half (characters are wider)


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str


def _wrap(text: str) -> str:
    cjk = sum(1 for ch in text if ord(ch) > 0x2E80) > len(text) / 3
    width = LINE_CHARS // 2 if cjk else LINE_CHARS
    if len(text) <= width:
        return text
    if cjk:
        half = (len(text) + 1) // 2
        return text[:half] + "\n" + text[half:]
    lines = textwrap.wrap(text, width=width)
    if len(lines) > 2:  # too long for two guideline lines: widen them rather than add a third
        lines = textwrap.wrap(text, width=max(width, (len(text) + 1) // 2 + 8))
    return "\n".join(lines)


def cues_for_track(timings: list[tuple[float, float, str]], duration: float) -> list[Cue]:
    """(start, end, text) of each placed dub clip -> readable cues that never overlap."""
    cues: list[Cue] = []
    for i, (start, end, text) in enumerate(timings):
        if start >= duration:
            break  # a line placed past the end of the video is not heard, so it gets no cue
        next_start = timings[i + 1][0] if i + 1 < len(timings) else duration
        end = min(max(end, start + MIN_CUE_S), max(next_start - 0.001, start + 0.001), duration)
        cues.append(Cue(start, end, _wrap(text)))
    return cues


def write_srt(cues: list[Cue], path: Path) -> Path:
    items = [
        srt.Subtitle(
            index=i + 1, start=timedelta(seconds=c.start), end=timedelta(seconds=c.end), content=c.text
        )
        for i, c in enumerate(cues)
    ]
    write_bytes_atomic(path, srt.compose(items, reindex=False).encode("utf-8"))
    return path


def _vtt_time(t: float) -> str:
    ms = int(round(t * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def write_vtt(cues: list[Cue], path: Path, language: str) -> Path:
    parts = ["WEBVTT", f"Language: {language}", ""]
    for i, c in enumerate(cues):
        parts += [str(i + 1), f"{_vtt_time(c.start)} --> {_vtt_time(c.end)}", c.text, ""]
    write_bytes_atomic(path, "\n".join(parts).encode("utf-8"))
    return path
