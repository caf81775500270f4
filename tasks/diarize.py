"""Diarization stage: who speaks when -> work/diarization.json, and the plain functions that give each word
and each plan line its speaker.

The flow runs `diarize` after transcription (the recogniser's words are the speech it attributes), then
`assign_speakers` gives each word the speaker of the turn it overlaps most, and
`split_lines_at_speaker_changes` cuts a plan line where its speaker changes (a quick exchange often falls
inside one recognised sentence or one Whisper segment). Speakers are named S1, S2, ... in order of first
appearance, the names segments.json and `--cast S1=...` use.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from pathlib import Path

from prefect import task

from core.config import DubConfig
from core.files import content_key, is_fresh, mark_fresh, read_json, write_json_atomic
from core.progress import stage_logger
from models.base import Word
from models.diarization import Diarizer, EmbeddingDiarizer, SpeakerHints, Turn
from tasks.media import STAGE
from tasks.segment import Line, set_pauses

DIARIZATION_VERSION = 1
MIN_PIECE_S = 0.05  # a piece of a split line is never shorter than this


def rename_speakers(turns: Sequence[Turn]) -> list[Turn]:
    """The turns sorted by start, speakers renamed S1, S2, ... in order of first appearance."""
    names: dict[str, str] = {}
    out: list[Turn] = []
    for turn in sorted(turns, key=lambda t: (t.start, t.end)):
        name = names.setdefault(turn.speaker, f"S{len(names) + 1}")
        out.append(Turn(turn.start, turn.end, name))
    return out


def assign_speakers(words: Sequence[Word], turns: Sequence[Turn]) -> list[str]:
    """Per word: the speaker of the turn it overlaps most; a word no turn overlaps (the diarizer left it
    out as a pause or a scrap) takes the nearest turn's speaker. Speakers come out renamed S1, S2, ... in
    order of first appearance among the words (all S1 when there are no turns)."""
    ordered = sorted(turns, key=lambda t: (t.start, t.end))
    if not ordered:
        return ["S1"] * len(words)
    starts = [t.start for t in ordered]
    raw: list[str] = []
    for word in words:
        # candidates: turns starting before the word ends, the last few of which can overlap it
        hi = bisect.bisect_left(starts, word.end)
        best, best_overlap = None, 0.0
        for turn in ordered[max(0, hi - 8) : hi + 1]:
            overlap = min(word.end, turn.end) - max(word.start, turn.start)
            if overlap > best_overlap:
                best, best_overlap = turn, overlap
        if best is None:
            mid = (word.start + word.end) / 2
            best = min(ordered[max(0, hi - 2) : hi + 2], key=lambda t: max(t.start - mid, mid - t.end, 0.0))
        raw.append(best.speaker)
    names: dict[str, str] = {}
    return [names.setdefault(s, f"S{len(names) + 1}") for s in raw]


def _join(words: Sequence[Word]) -> str:
    return " ".join("".join(w.text for w in words).split())


def _words_of_lines(lines: Sequence[Line], words: Sequence[Word]) -> list[list[int]]:
    """Indices of the words each line holds: a word belongs to the line its middle falls in, else to the
    nearest line (line edges were snapped to the audio and may have moved past a word's recognised time)."""
    owned: list[list[int]] = [[] for _ in lines]
    if not lines:
        return owned
    starts = [ln.start for ln in lines]
    for i, word in enumerate(words):
        mid = (word.start + word.end) / 2
        j = max(0, bisect.bisect_right(starts, mid) - 1)
        candidates = [k for k in (j - 1, j, j + 1) if 0 <= k < len(lines)]
        k = min(candidates, key=lambda c: max(lines[c].start - mid, mid - lines[c].end, 0.0))
        owned[k].append(i)
    return owned


def split_lines_at_speaker_changes(
    lines: Sequence[Line], words_with_speakers: Sequence[tuple[Word, str]], duration: float
) -> list[Line]:
    """Lines with their speaker; a line whose words change speaker is cut at each word where it changes.
    The first piece keeps the line's start, the last its end, the cuts fall at word times; a line's own
    voice goes to every piece; a line with no words keeps its speaker. Lines are renumbered from 0 and
    their pauses recomputed (the plan is built from these lines, so there is no user edit to keep)."""
    words = [w for w, _ in words_with_speakers]
    speakers = [s for _, s in words_with_speakers]
    out: list[Line] = []
    for line, owned in zip(lines, _words_of_lines(lines, words), strict=True):
        runs: list[list[int]] = []
        for i in owned:
            if runs and speakers[runs[-1][-1]] == speakers[i]:
                runs[-1].append(i)
            else:
                runs.append([i])
        if len(runs) <= 1:
            speaker = speakers[runs[0][0]] if runs else line.speaker
            out.append(Line(0, line.start, line.end, line.text, line.pause_after, speaker, line.voice))
            continue
        for n, run in enumerate(runs):
            first, last = words[run[0]], words[run[-1]]
            start = line.start if n == 0 else max(first.start, out[-1].end)
            end = line.end if n == len(runs) - 1 else min(last.end, line.end)
            end = max(end, start + MIN_PIECE_S)
            out.append(Line(0, round(start, 3), round(end, 3), _join([words[i] for i in run]), 0.0,
                            speakers[run[0]], line.voice))  # fmt: skip
    for index, piece in enumerate(out):
        piece.index = index
    set_pauses(out, duration)
    return out


def turns_to_json(turns: Sequence[Turn], identity: dict, hints: SpeakerHints) -> dict:
    return {
        "version": DIARIZATION_VERSION,
        "engine": identity,
        "hints": hints.to_json(),
        "speakers": list(dict.fromkeys(t.speaker for t in turns)),
        "turns": [{"start": t.start, "end": t.end, "speaker": t.speaker} for t in turns],
    }


def turns_from_json(data: dict) -> list[Turn]:
    return [Turn(float(t["start"]), float(t["end"]), str(t["speaker"])) for t in data["turns"]]


@task(name="diarize", **STAGE)
def diarize(
    audio: Path,
    audio_key: str,
    words: Sequence[Word],
    words_key: str,
    hints: SpeakerHints,
    out_json: Path,
    engine: Diarizer | None = None,
) -> tuple[list[Turn], str]:
    """Turns of `audio` (the 16 kHz analysis audio or the vocals) over the recognised `words`, renamed
    S1, S2, ...; cached in `out_json` under a key of the audio, the words (`words_key`: the transcript's
    key), the engine and the hints. Returns the turns and that key."""
    diarizer = engine or EmbeddingDiarizer()
    identity = diarizer.identity()
    key = content_key("diarize-v1", audio_key, words_key, identity, hints.to_json())
    log = stage_logger()
    if is_fresh(out_json, key):
        turns = turns_from_json(read_json(out_json))
        log.info("diarization cached turns=%d", len(turns))
        return turns, key
    spans = [(w.start, w.end) for w in words if w.end > w.start]
    turns = rename_speakers(diarizer.diarize(audio, spans or None, hints))
    write_json_atomic(out_json, turns_to_json(turns, identity, hints))
    mark_fresh(out_json, key)
    log.info(
        "diarized engine=%s speakers=%d turns=%d", diarizer.name, len({t.speaker for t in turns}), len(turns)
    )
    return turns, key


def diarizer_for(config: DubConfig) -> Diarizer | None:
    """The job's diarizer (--diarizer), or None for `none` (every line is S1). Loads nothing."""
    if config.diarizer == "none":
        return None
    if config.diarizer == "pyannote":
        from models.pyannote_diarizer import PyannoteDiarizer

        assert config.diarization_pipeline is not None  # the config refuses pyannote without one
        device = "cuda" if config.device in ("auto", "cuda") and _cuda() else "cpu"
        return PyannoteDiarizer(config.diarization_pipeline, device=device)
    return EmbeddingDiarizer()


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
