"""Turn a transcript into dubbing lines: the editable segment plan (segments.json).

Lines are built from word timings: a line ends at a sentence end or at a pause, fragments shorter
than MIN_LINE_S are merged into a neighbour, lines longer than MAX_LINE_S are split at their longest
pause. Each line records the pause that follows it: the time its dub may borrow.

Whisper's word starts run late (measured on the bundled sample with tiny.en: +0.11..+0.39 s, mean
+0.24 s), which would make every dubbed line start late. So each line's start is snapped to the speech
onset in the audio's energy envelope near the recognised start (see refine_line_edges).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task

from audio.speech_reader import Samples, SpeechReader
from core.edits import adopt_proposal, drop_proposal, edited_by_user, proposal_path, write_editable
from core.errors import InputError
from core.files import content_key, is_fresh, mark_fresh, write_json_atomic
from core.progress import stage_logger
from models.base import Transcript, Word
from models.diarization import Turn
from tasks.media import ANALYSIS_RATE, STAGE

SENTENCE_END = (".", "!", "?", "。", "！", "？", "…", "؟")
PAUSE_SPLIT_S = 0.6  # a silence this long between words ends a line even mid-sentence
CLAUSE_PAUSE_SPLIT_S = 0.3  # after a comma/semicolon a shorter pause is enough
CLAUSE_END = (",", ";", ":", "，", "；", "：", "、")
MIN_LINE_S = 1.0  # shorter fragments are merged into a neighbour (too short to dub naturally)
MAX_LINE_S = 12.0  # longer lines are split at their longest internal pause
MERGE_MAX_GAP_S = 1.5  # never merge across a silence longer than this
# Whisper hallucination filters (the thresholds faster-whisper/openai-whisper use for their fallbacks)
NO_SPEECH_PROB_MAX = 0.6
AVG_LOGPROB_MIN = -1.0
COMPRESSION_RATIO_MAX = 2.4


@dataclass
class Line:
    index: int
    start: float
    end: float
    text: str
    pause_after: float = 0.0  # silence until the next line starts (or until the end of the audio)
    speaker: str = "S1"
    voice: str | None = None  # this line's own voice, over its speaker's (set by hand in segments.json)

    @property
    def slot_end(self) -> float:
        return self.end + self.pause_after


def usable_words(transcript: Transcript) -> list[Word]:
    """Words from segments that are not Whisper hallucinations, and no verbatim repeats of the previous
    segment (the repetition-loop failure mode)."""
    words: list[Word] = []
    previous_text = None
    for seg in transcript.segments:
        hallucinated = seg.no_speech_prob > NO_SPEECH_PROB_MAX and seg.avg_logprob < AVG_LOGPROB_MIN
        if hallucinated or seg.compression_ratio > COMPRESSION_RATIO_MAX:
            continue
        if previous_text is not None and seg.text.strip().lower() == previous_text:
            continue
        previous_text = seg.text.strip().lower()
        words.extend(w for w in seg.words if w.text.strip())
    return words


def _join(words: list[Word]) -> str:
    text = "".join(w.text for w in words).strip()
    return " ".join(text.split())


def _split_long(words: list[Word]) -> list[list[Word]]:
    if len(words) < 2 or words[-1].end - words[0].start <= MAX_LINE_S:
        return [words]
    gaps = [words[i + 1].start - words[i].end for i in range(len(words) - 1)]
    # prefer a sentence/clause boundary, then the longest pause
    scores = [g + (0.5 if _ends_clause(words[i]) else 0.0) for i, g in enumerate(gaps)]
    cut = int(np.argmax(scores)) + 1
    return _split_long(words[:cut]) + _split_long(words[cut:])


def _ends_sentence(group: list[Word]) -> bool:
    return group[-1].text.strip().endswith(SENTENCE_END)


def _ends_clause(word: Word) -> bool:
    return word.text.strip().endswith(CLAUSE_END)


def _merge_short(groups: list[list[Word]]) -> list[list[Word]]:
    """Merge fragments shorter than MIN_LINE_S into a neighbour: into the one in the same sentence when
    there is one (a fragment after a sentence end belongs to what follows), else across the shorter gap.
    The tail of a sentence (its last words after a pause) only ever joins that sentence."""
    groups = [g for g in groups if g]
    i = 0
    while i < len(groups) and len(groups) > 1:
        g = groups[i]
        if g[-1].end - g[0].start >= MIN_LINE_S:
            i += 1
            continue
        prev_gap = g[0].start - groups[i - 1][-1].end if i > 0 else float("inf")
        next_gap = groups[i + 1][0].start - g[-1].end if i + 1 < len(groups) else float("inf")
        same_sentence_prev = i > 0 and not _ends_sentence(groups[i - 1])
        same_sentence_next = i + 1 < len(groups) and not _ends_sentence(g)
        # a merge may not recreate a line longer than MAX_LINE_S (the split above would be undone)
        can_prev = prev_gap <= MERGE_MAX_GAP_S and g[-1].end - groups[i - 1][0].start <= MAX_LINE_S
        can_next = next_gap <= MERGE_MAX_GAP_S and groups[i + 1][-1].end - g[0].start <= MAX_LINE_S
        if same_sentence_prev and _ends_sentence(g):
            # the tail of the sentence before it: never glued to the next sentence (that line would start
            # a whole sentence early); it joins its own sentence, even past MAX_LINE_S, or stays alone
            if prev_gap > MERGE_MAX_GAP_S:
                i += 1
                continue
            into_prev = True
        elif (
            can_prev and same_sentence_prev and not (same_sentence_next and can_next and next_gap < prev_gap)
        ):
            into_prev = True
        elif can_next and same_sentence_next:
            into_prev = False
        elif can_prev or can_next:
            into_prev = can_prev and (not can_next or prev_gap <= next_gap)
        else:
            i += 1  # isolated short utterance ("Yes."): keep it as its own line
            continue
        if into_prev:
            groups[i - 1] = groups[i - 1] + g
            del groups[i]
            i -= 1
        else:
            groups[i] = g + groups[i + 1]
            del groups[i + 1]
    return groups


def build_lines(words: list[Word], duration: float) -> list[Line]:
    groups: list[list[Word]] = []
    current: list[Word] = []
    for word in words:
        if current:
            prev = current[-1]
            gap = round(word.start - prev.end, 6)  # float noise: 1.64 - 1.04 < 0.6
            sentence_end = prev.text.strip().endswith(SENTENCE_END)
            if sentence_end or gap >= PAUSE_SPLIT_S or (gap >= CLAUSE_PAUSE_SPLIT_S and _ends_clause(prev)):
                groups.append(current)
                current = []
        current.append(word)
    if current:
        groups.append(current)
    groups = [piece for g in groups for piece in _split_long(g)]
    lines = [Line(i, g[0].start, g[-1].end, _join(g)) for i, g in enumerate(_merge_short(groups))]
    set_pauses(lines, duration)
    return lines


def set_pauses(lines: list[Line], duration: float) -> None:
    for a, b in zip(lines, lines[1:], strict=False):
        a.pause_after = max(0.0, round(b.start - a.end, 3))
    if lines:
        lines[-1].pause_after = max(0.0, round(duration - lines[-1].end, 3))


# -- onset refinement --------------------------------------------------------------------------------

FRAME_S = 0.02  # energy frame (20 ms) and hop (10 ms): the usual speech-analysis resolution
HOP_S = 0.01
ONSET_BELOW_PEAK_DB = 18.0  # speech edge = envelope crosses (line's loud level - 18 dB) ...
ABOVE_BACKGROUND_DB = 8.0  # ... and stands this far above the gap's level (music bed)
END_SEARCH_FORWARD_S = 0.3
MAX_DIP_S = 0.12  # quiet runs shorter than this are inside speech (stop closures, short breaths)
ONSET_SEARCH_BACK_S = 0.6  # how far before the recognised start an onset may be
ONSET_SEARCH_FORWARD_S = 0.6  # tiny.en put a start 0.41 s early on the sample


def frame_db(samples: Samples) -> np.ndarray:
    """RMS level per hop in dBFS of a mono signal at ANALYSIS_RATE, read a block of frames at a time (a
    whole film's gathered frames took GBs; its samples alone, 460 MB for two hours)."""
    rate = ANALYSIS_RATE
    frame, hop = int(FRAME_S * rate), int(HOP_S * rate)
    if samples.size < frame:
        return np.full(1, -120.0)
    n = 1 + (samples.size - frame) // hop
    rms = np.empty(n, dtype=np.float32)
    block = 8192
    idx = np.arange(frame)[None, :] + hop * np.arange(block)[:, None]
    for first in range(0, n, block):
        rows = min(block, n - first)
        piece = samples.read(first * hop, first * hop + (rows - 1) * hop + frame)
        rms[first : first + rows] = np.sqrt(np.mean(piece[idx[:rows]] ** 2, axis=1) + 1e-12)
    return 20 * np.log10(rms + 1e-12)


def refine_line_edges(lines: list[Line], samples: Samples, duration: float) -> None:
    """Snap each line's edges to where its speech begins and ends in the energy envelope.

    Threshold per line: ONSET_BELOW_PEAK_DB under the line's loud level, and at least
    ABOVE_BACKGROUND_DB over the level of the gap before it (the music bed when separation is off).
    Start: from the first loud frame at or after the recognised start, walk back while frames stay loud;
    accepted only if a quiet frame is reached inside the search window (else the region is ambiguous
    and the recognised start is kept). End: the last loud frame before the recognised end (+ a little).
    Edges never cross a neighbouring line. `samples`: the speech, mono at ANALYSIS_RATE."""
    db = frame_db(samples)
    last = len(db) - 1

    def frame_of(t: float) -> int:
        return int(np.clip(round(t / HOP_S), 0, last))

    max_dip = int(round(MAX_DIP_S / HOP_S))

    def walk_back(f: int, lo: int, threshold: float) -> tuple[int, bool]:
        """Earliest loud frame reachable from loud frame f going back, crossing quiet dips shorter than
        MAX_DIP_S (stop closures inside words); True when a real silence (not the floor) stopped it."""
        earliest, quiet = f, 0
        while f > lo:
            f -= 1
            if db[f] > threshold:
                earliest, quiet = f, 0
            else:
                quiet += 1
                if quiet >= max_dip:
                    return earliest, True
        return earliest, False

    def walk_forward(f: int, hi: int, threshold: float) -> int:
        latest, quiet = f, 0
        while f < hi:
            f += 1
            if db[f] > threshold:
                latest, quiet = f, 0
            else:
                quiet += 1
                if quiet >= max_dip:
                    break
        return latest

    thresholds: list[float | None] = []
    for i, line in enumerate(lines):  # pass 1: thresholds and starts
        a, b = frame_of(line.start), frame_of(line.end)
        prev = lines[i - 1] if i else None
        # Whisper's line ends are as unreliable as its starts, so the floor is the previous START
        floor_t = max(line.start - ONSET_SEARCH_BACK_S, prev.start + MIN_LINE_S / 2 if prev else 0.0)
        lo = frame_of(floor_t)
        window = db[lo : a + 1]
        background = float(np.percentile(window, 10)) if window.size >= 5 else -120.0
        loud = float(np.percentile(db[a : b + 1], 90)) if b > a else background
        threshold = max(loud - ONSET_BELOW_PEAK_DB, background + ABOVE_BACKGROUND_DB)
        if threshold >= loud - 3.0:
            thresholds.append(None)  # speech barely above its background: keep the recognised edges
            continue
        thresholds.append(threshold)
        hi = frame_of(min(line.start + ONSET_SEARCH_FORWARD_S, line.end))
        first_loud = next((f for f in range(a, hi + 1) if db[f] > threshold), None)
        if first_loud is None:
            continue
        onset, certain = walk_back(first_loud, lo, threshold)
        if certain:
            line.start = round(onset * HOP_S, 3)

    for i, line in enumerate(lines):  # pass 2: ends, contiguous with the line's own speech
        line_threshold = thresholds[i]
        if line_threshold is None:
            continue
        threshold = line_threshold
        next_start = lines[i + 1].start if i + 1 < len(lines) else duration
        ceiling = frame_of(min(line.end + END_SEARCH_FORWARD_S, next_start) - HOP_S)
        first = frame_of(line.start)
        f = max(min(frame_of(line.end), ceiling), first)
        if db[f] > threshold:
            f = walk_forward(f, ceiling, threshold)
        else:
            while f > first and db[f] <= threshold:
                f -= 1
        end_t = f * HOP_S + FRAME_S
        line.end = round(min(max(end_t, line.start + 0.2), next_start), 3)
    set_pauses(lines, duration)


# -- the plan file -----------------------------------------------------------------------------------

PLAN_VERSION = 1


def line_to_json(line: Line) -> dict[str, Any]:
    """A plan line as segments.json holds it: `voice` only when the line has its own."""
    return {k: v for k, v in asdict(line).items() if not (k == "voice" and v is None)}


def plan_to_json(lines: list[Line], transcript: Transcript) -> dict[str, Any]:
    return {
        "version": PLAN_VERSION,
        "source_language": transcript.language,
        "language_probability": round(transcript.language_probability, 4),
        "duration": transcript.duration,
        "lines": [
            {
                **line_to_json(line),
                "start": round(line.start, 3),
                "end": round(line.end, 3),
            }
            for line in lines
        ],
    }


def load_plan(path: Path) -> tuple[str, list[Line]]:
    """Read and validate segments.json (users may edit it); errors name the offending line."""
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path.name} is not valid JSON ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("lines"), list):
        raise InputError(f"{path.name}: expected an object with a 'lines' list")
    lines: list[Line] = []
    for n, item in enumerate(data["lines"]):
        try:
            line = Line(
                index=int(item.get("index", n)),
                start=float(item["start"]),
                end=float(item["end"]),
                text=item["text"].strip(),  # null or a number is an error, not the text "None"
                pause_after=float(item.get("pause_after", 0.0)),
                speaker=str(item.get("speaker", "S1")),
                voice=str(item["voice"]).strip() or None if item.get("voice") is not None else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise InputError(f"{path.name}: line {n} needs numeric 'start', 'end' and a 'text'") from None
        if not line.text:
            raise InputError(f"{path.name}: line {line.index} has empty text")
        if not all(math.isfinite(v) for v in (line.start, line.end, line.pause_after)) or line.start < 0:
            raise InputError(f"{path.name}: line {line.index} has a negative or non-finite time")
        if line.end <= line.start:
            raise InputError(f"{path.name}: line {line.index} ends before it starts")
        if lines and line.start < lines[-1].end - 1e-6:
            raise InputError(f"{path.name}: line {line.index} starts before line {lines[-1].index} ends")
        if any(line.index == other.index for other in lines):
            raise InputError(f"{path.name}: line index {line.index} appears twice")
        lines.append(line)
    if not lines:
        raise InputError(f"{path.name} has no lines: no speech to dub")
    try:
        duration = float(data.get("duration") or lines[-1].end + lines[-1].pause_after)
    except (TypeError, ValueError):
        raise InputError(f"{path.name}: 'duration' must be a number of seconds") from None
    set_pauses(lines, max(duration, lines[-1].end))
    return str(data.get("source_language", "")), lines


# -- Prefect task ------------------------------------------------------------------------------------


def plan_lines_key(lines: list[Line]) -> str:
    """What the rest of the job depends on in a plan (its lines' times and texts)."""
    return content_key("plan", [(ln.index, ln.start, ln.end, ln.text) for ln in lines])


def translations_edited(job_root: Path) -> list[str]:
    """The lines.<lang>.json files in the job folder that hold the user's own translations: their lines
    belong to the plan as it is, so that plan is the user's too."""
    from tasks.translate import holds_edits

    return sorted(
        path.name for path in job_root.glob("lines.*.json") if path.stem.count(".") == 1 and holds_edits(path)
    )


def users_plan(out_json: Path) -> str:
    """Why segments.json is the user's plan ("" when it is the job's own, free to rebuild)."""
    if not out_json.is_file():
        return ""
    if edited_by_user(out_json):
        return "changed since the job wrote it, or written before edits were tracked"
    edited = translations_edited(out_json.parent)
    return f"your translations in {', '.join(edited)} belong to it" if edited else ""


def build_plan(transcript: Transcript, vocals: Path, turns: list[Turn] | None, several: bool) -> list[Line]:
    """The line plan from the transcript (and speaker turns): what segments.json gets when it is ours."""
    words = usable_words(transcript)
    if not words:
        raise InputError("no usable speech found (only silence, music or hallucinated text)")
    lines = build_lines(words, transcript.duration)
    with SpeechReader(vocals) as speech:  # read a block at a time (audio/speech_reader.py)
        refine_line_edges(lines, speech, transcript.duration)
    if several:
        from tasks.diarize import assign_speakers, split_lines_at_speaker_changes

        assert turns is not None
        speakers = assign_speakers(words, turns)
        lines = split_lines_at_speaker_changes(
            lines, list(zip(words, speakers, strict=True)), transcript.duration
        )
    return lines


def keep_or_propose(out_json: Path, key: str, make: Any, adopt: bool, why_users: str) -> None:
    """segments.json holds the user's plan and upstream changed (`key` is not its key): the user's plan is
    kept and the new one written beside it (segments.proposed.json, made once per key by `make()`, which
    returns the plan's JSON); `adopt` (--adopt-proposal) takes the proposal instead."""
    log = stage_logger()
    proposal = proposal_path(out_json)
    if not is_fresh(proposal, key):
        write_json_atomic(proposal, make())
        mark_fresh(proposal, key)
    if adopt:
        kept = adopt_proposal(out_json)
        mark_fresh(out_json, key)
        log.warning("segment plan: adopted %s (yours is kept as %s)", proposal.name, kept.name)
        return
    _, mine = load_plan(out_json)
    _, theirs = load_plan(proposal)
    if plan_lines_key(mine) == plan_lines_key(theirs) and [ln.speaker for ln in mine] == [
        ln.speaker for ln in theirs
    ]:
        drop_proposal(out_json)  # the new plan is the user's plan: nothing to propose
        mark_fresh(out_json, key)
        log.info("segment plan kept (%s; the new transcript gives the same plan)", why_users)
        return
    log.warning(
        "segment plan kept: %s is yours (%s) and what it was made from changed; the new plan is in %s "
        "(--adopt-proposal takes it)",
        out_json.name, why_users, proposal.name,
    )  # fmt: skip


@task(name="segment", **STAGE)
def segment(
    transcript: Transcript,
    transcript_key: str,
    vocals: Path,
    out_json: Path,
    turns: list[Turn] | None = None,
    turns_key: str = "",
    adopt: bool = False,
) -> tuple[str, list[Line], str]:
    """Build (or keep) segments.json. A plan whose key still matches the transcript (and the speaker
    turns) is kept as is. When they changed (another ASR model, separator, source language, demucs
    version, diarization options...), a plan the job wrote and nobody touched is rebuilt; a plan that is
    the user's (edited, written by an earlier version, or whose lines the user's translations in
    lines.<lang>.json belong to) is never overwritten: the new plan goes beside it as
    segments.proposed.json and `adopt` (--adopt-proposal) takes it (core/edits.py). The returned key
    hashes the plan's content, so an edit is seen. `turns` (diarization): each word gets its speaker, and
    a line in which the speaker changes is split at that word. With one speaker the plan, and its key,
    are what they were before speakers existed."""
    several = turns is not None and len({t.speaker for t in turns}) > 1
    key = (
        content_key("segment-v2", transcript_key, turns_key)
        if several
        else content_key("segment-v1", transcript_key)
    )
    log = stage_logger()

    def make() -> dict[str, Any]:
        return plan_to_json(build_plan(transcript, vocals, turns, several), transcript)

    if is_fresh(out_json, key):
        drop_proposal(out_json)  # made for inputs the job no longer has
        log.info("segment plan kept (existing %s)", out_json.name)
    elif reason := users_plan(out_json):
        keep_or_propose(out_json, key, make, adopt, reason)
    else:
        plan = make()
        write_editable(out_json, plan)
        mark_fresh(out_json, key)
        drop_proposal(out_json)
        log.info("segmented lines=%d", len(plan["lines"]))
    source_lang, lines = load_plan(out_json)
    return source_lang or transcript.language, lines, plan_lines_key(lines)


# -- plans from outside: an existing segments.json or a subtitle file ------------------------------------

_TAG = re.compile(r"<[^>]+>")  # SRT has no standard markup, but <i>/<b>/<font> are common in the wild


def _vtt_cues(text: str, name: str) -> list[tuple[float, float, str]]:
    """WebVTT cues read by webvtt-py (tags removed, character references resolved)."""
    import webvtt
    from webvtt.errors import MalformedCaptionError, MalformedFileError

    from text.subtitles import vtt_cue_text

    try:
        document = webvtt.WebVTT.from_string(text, strict=True)
    except MalformedFileError:
        raise InputError(f"{name} is not WebVTT (no WEBVTT header)") from None
    except MalformedCaptionError:
        timings = [row for row in text.splitlines() if "-->" in row]
        for n, row in enumerate(timings, start=1):
            stamps = row.split("-->", 1)
            try:
                for stamp in (stamps[0], stamps[1].split()[0]):
                    webvtt.Caption(start=stamp.strip())
            except (MalformedCaptionError, IndexError):
                raise InputError(f"{name}: cue {n} has a malformed timestamp") from None
        raise InputError(f"{name}: a cue is malformed") from None
    return [
        (c.start_time.in_milliseconds() / 1000, c.end_time.in_milliseconds() / 1000, vtt_cue_text(c))
        for c in document.captions
    ]


def lines_from_subtitles(path: Path) -> list[Line]:
    """SRT or WebVTT cues -> lines (cue text joined to one line, markup removed)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read subtitles {path.name} ({exc.__class__.__name__})") from None
    cues: list[tuple[float, float, str]] = []
    if path.suffix.lower() == ".vtt":
        cues = _vtt_cues(text, path.name)
    else:
        import srt

        try:
            cues = [
                (
                    c.start.total_seconds(),
                    c.end.total_seconds(),
                    _TAG.sub("", c.content).replace("\n", " "),
                )
                for c in srt.parse(text)
            ]
        except srt.SRTParseError as exc:
            raise InputError(f"{path.name} is not valid SRT ({exc.__class__.__name__})") from None
    lines: list[Line] = []
    for start, end, cue_text in sorted(cues):
        cue_text = " ".join(cue_text.split())
        if not cue_text or end <= start:
            continue
        if lines and start < lines[-1].end:  # overlapping cues (rolling captions): trim the earlier one
            lines[-1].end = max(lines[-1].start + 0.05, start)
        lines.append(Line(len(lines), round(start, 3), round(end, 3), cue_text))
    if not lines:
        raise InputError(f"{path.name} has no usable cues: no speech to dub")
    return lines


@task(name="import-plan", **STAGE)
def import_plan(
    source: Path, kind: str, source_lang: str | None, duration: float, out_json: Path
) -> tuple[str, list[Line], str]:
    """Start from a plan the user already has (skipping recognition): a segments.json or subtitles."""
    if kind == "segments":
        plan_lang, lines = load_plan(source)
    else:
        plan_lang, lines = "", lines_from_subtitles(source)
    set_pauses(lines, duration)
    language = source_lang or plan_lang or ""
    if source.resolve() != out_json.resolve():
        write_json_atomic(
            out_json,
            {
                "version": PLAN_VERSION,
                "source_language": language,
                "duration": duration,
                "lines": [line_to_json(line) for line in lines],
            },
        )
    stage_logger().info("plan imported kind=%s lines=%d", kind, len(lines))
    return language, lines, plan_lines_key(lines)
