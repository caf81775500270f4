"""Subtitles timed to the dub: SRT (sidecar and soft track, written by `srt`) and WebVTT sidecars
(written and read by webvtt-py: a WebVTT-only library that keeps cue identifiers, settings and the
header's metadata lines and is typed; pysubs2 would convert every cue through its ASS model).

WebVTT cue text is markup: `&`, `<` and `>` are written as character references (`&amp;` `&lt;`
`&gt;`) and read back as the characters, after the cue's tags are removed.
"""

from __future__ import annotations

import html
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import srt
import webvtt

from core.files import write_bytes_atomic
from core.languages import is_double_width

MIN_CUE_S = 0.8  # shorter cues cannot be read
LINE_CHARS = 42  # Netflix/BBC guideline for Latin scripts; CJK uses half (characters are wider)


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str
    speaker: str | None = None  # the label of who speaks (--subtitle-speakers), None: unlabelled


def _wrap(text: str) -> str:
    cjk = sum(map(is_double_width, text)) > len(text) / 3
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


def cues_for_track(
    timings: list[tuple[float, float, str]], duration: float, speakers: Sequence[str] | None = None
) -> list[Cue]:
    """(start, end, text) of each placed dub clip -> readable cues that never overlap; `speakers`: the
    label of each clip's speaker (--subtitle-speakers), written by write_srt and write_vtt."""
    cues: list[Cue] = []
    for i, (start, end, text) in enumerate(timings):
        if start >= duration:
            break  # a line placed past the end of the video is not heard, so it gets no cue
        next_start = timings[i + 1][0] if i + 1 < len(timings) else duration
        end = min(max(end, start + MIN_CUE_S), max(next_start - 0.001, start + 0.001), duration)
        speaker = speakers[i] if speakers is not None else None
        cues.append(Cue(start, end, _wrap(f"{speaker}: {text}" if speaker else text), speaker))
    return cues


def srt_text(cue: Cue, previous: Cue | None) -> str:
    """A cue as SRT shows it: its speaker's label only where the speaker changes (SRT has no markup for
    speakers; a label on every cue of a monologue is noise)."""
    if not cue.speaker or (previous is not None and previous.speaker == cue.speaker):
        return unlabelled(cue)
    return cue.text


def unlabelled(cue: Cue) -> str:
    """The cue's text without its speaker label (rewrapped when the label was part of the wrapping)."""
    prefix = f"{cue.speaker}: "
    if not cue.speaker or not cue.text.replace("\n", " ").startswith(prefix):
        return cue.text
    joined = cue.text.replace("\n", "" if sum(map(is_double_width, cue.text)) > len(cue.text) / 3 else " ")
    return _wrap(joined[len(prefix) :])


def write_srt(cues: list[Cue], path: Path) -> Path:
    items = [
        srt.Subtitle(
            index=i + 1,
            start=timedelta(seconds=c.start),
            end=timedelta(seconds=c.end),
            content=srt_text(c, cues[i - 1] if i else None),
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


def vtt_escape(text: str) -> str:
    """Cue text as WebVTT writes it: `&`, `<`, `>` as character references (so "-->" cannot occur)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def vtt_cue_text(caption: webvtt.Caption) -> str:
    """What a WebVTT cue says: its tags removed, character references resolved."""
    return html.unescape(caption.text)


def _voice_span(cue: Cue, rows: list[str]) -> list[str]:
    """WebVTT's own speaker markup: `<v Name>` opens the cue (players may show or style the name)."""
    if not cue.speaker or not rows:
        return rows
    name = vtt_escape(cue.speaker).replace(">", "")
    return [f"<v {name}>{rows[0]}", *rows[1:]]


def write_vtt(cues: list[Cue], path: Path, language: str) -> Path:
    captions = [
        webvtt.Caption(
            start=_vtt_time(c.start),
            end=_vtt_time(c.end),
            text=_voice_span(c, [vtt_escape(row) for row in unlabelled(c).split("\n") if row.strip()]),
            identifier=str(i + 1),
        )  # a blank row would end the cue
        for i, c in enumerate(cues)
    ]
    document = webvtt.WebVTT(captions=captions, metadata=[f"Language: {language}"])
    write_bytes_atomic(path, document.content.encode("utf-8"))
    return path
