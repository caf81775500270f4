"""tasks/segment.py on synthetic word timings and a synthetic speech envelope: line building, hallucination
filtering, onset refinement and the editable plan file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from audio.speech_reader import ArrayReader
from core.errors import InputError
from models.base import Transcript, TranscriptSegment, Word
from tasks.segment import (
    MAX_LINE_S,
    Line,
    build_lines,
    load_plan,
    plan_to_json,
    refine_line_edges,
    set_pauses,
    usable_words,
)


def words(*spec: tuple[float, float, str]) -> list[Word]:
    """(start, end, text) -> Words, text with the leading space Whisper writes."""
    return [Word(s, e, " " + t) for s, e, t in spec]


def spaced(
    text: str, start: float, word_s: float = 0.3, gap_s: float = 0.05
) -> list[tuple[float, float, str]]:
    """Words of `text` one after another from `start`."""
    out, t = [], start
    for w in text.split():
        out.append((round(t, 3), round(t + word_s, 3), w))
        t += word_s + gap_s
    return out


def texts(lines: list[Line]) -> list[str]:
    return [ln.text for ln in lines]


# -- build_lines: splitting ----------------------------------------------------------------------------


def test_splits_at_sentence_end() -> None:
    ws = words(*spaced("Hello there my friend.", 0.0), *spaced("How are you doing today?", 1.45))
    lines = build_lines(ws, duration=4.0)
    assert texts(lines) == ["Hello there my friend.", "How are you doing today?"]
    assert lines[0].start == 0.0 and lines[0].end == pytest.approx(1.35)
    assert lines[1].start == pytest.approx(1.45)
    assert [ln.index for ln in lines] == [0, 1]


@pytest.mark.parametrize(("gap", "expected"), [(0.6, 2), (0.75, 2), (0.55, 1)])
def test_splits_at_long_pause_mid_sentence(gap: float, expected: int) -> None:
    first = spaced("we walked along the river", 0.0)
    second_start = first[-1][1] + gap
    ws = words(*first, *spaced("until the sun went down.", second_start))
    lines = build_lines(ws, duration=6.0)
    assert len(lines) == expected
    if expected == 2:
        assert texts(lines) == ["we walked along the river", "until the sun went down."]
        assert lines[1].start == pytest.approx(second_start)
    else:
        assert texts(lines) == ["we walked along the river until the sun went down."]


@pytest.mark.parametrize("prev_end", [1.04, 2.86, 5.0, 7.52])
def test_threshold_pauses_on_whisper_time_grid(prev_end: float) -> None:
    """Whisper times are on a 0.01/0.02 s grid: a gap of exactly 0.6 s (or 0.3 s after a comma) splits
    whatever the float subtraction makes of it."""
    for first, gap in (("and then we walked", 0.6), ("and then we walked,", 0.3)):
        head = spaced(first, 0.0)
        shift = prev_end - head[-1][1]
        head = [(round(s + shift, 2), round(e + shift, 2), w) for s, e, w in head]
        tail = spaced("home again after dinner.", round(prev_end + gap, 2))
        tail = [(round(s, 2), round(e, 2), w) for s, e, w in tail]
        lines = build_lines(words(*head, *tail), duration=prev_end + 5.0)
        assert texts(lines) == [first, "home again after dinner."], (first, prev_end, tail[0][0] - prev_end)


@pytest.mark.parametrize(
    ("first", "gap", "expected"),
    [
        ("When we finally arrived,", 0.3, 2),
        ("When we finally arrived;", 0.35, 2),
        ("When we finally arrived,", 0.25, 1),
        ("When we finally arrived", 0.4, 1),  # no clause mark: 0.4 s is not enough
    ],
)
def test_splits_at_clause_mark_with_short_pause(first: str, gap: float, expected: int) -> None:
    a = spaced(first, 0.0)
    ws = words(*a, *spaced("the shop was already closed.", a[-1][1] + gap))
    assert len(build_lines(ws, duration=5.0)) == expected


# -- build_lines: merging ------------------------------------------------------------------------------


def test_short_fragment_joins_its_own_sentence_before_it() -> None:
    a = spaced("I really want to go there", 0.0)  # 2.05 s, no sentence end
    ws = words(*a, (a[-1][1] + 0.7, a[-1][1] + 1.0, "today."), *spaced("It will be fun for everyone.", 4.0))
    lines = build_lines(ws, duration=7.0)
    assert texts(lines) == ["I really want to go there today.", "It will be fun for everyone."]
    assert lines[0].start == 0.0 and lines[0].end == pytest.approx(a[-1][1] + 1.0)


def test_fragment_after_sentence_end_joins_what_follows() -> None:
    a = spaced("That part is done now.", 0.0)
    well = (a[-1][1] + 0.1, a[-1][1] + 0.4, "Well,")  # closer to the previous line than to the next
    rest = spaced("let us see what happens next.", well[1] + 0.35)
    lines = build_lines(words(*a, well, *rest), duration=6.0)
    assert texts(lines) == ["That part is done now.", "Well, let us see what happens next."]
    assert lines[1].start == pytest.approx(well[0])


def test_fragment_ending_a_sentence_joins_the_closer_sentence_neighbour() -> None:
    a = spaced("I told you so.", 0.0)
    yes = (a[-1][1] + 0.2, a[-1][1] + 0.5, "Yes.")  # its own short sentence, between two others
    rest = spaced("Then we went home together.", yes[1] + 0.9)
    lines = build_lines(words(*a, yes, *rest), duration=6.0)
    assert texts(lines) == ["I told you so. Yes.", "Then we went home together."]


def test_sentence_tail_is_never_glued_to_the_next_sentence() -> None:
    """A long sentence cut at a pause: its short tail stays with it even past MAX_LINE_S, so the next
    line starts at its own first word, not a second early on the tail of the sentence before."""
    head = spaced(" ".join(["word"] * 33), 0.0)  # 11.85 s without a sentence end
    tail = (head[-1][1] + 0.7, head[-1][1] + 1.2, "today.")
    rest = spaced("Then we went home together.", tail[1] + 0.4)
    lines = build_lines(words(*head, tail, *rest), duration=tail[1] + 5.0)
    assert texts(lines)[-1] == "Then we went home together."
    assert lines[-1].start == pytest.approx(rest[0][0])
    assert all(ln.text.endswith(("word", "today.")) for ln in lines[:-1])


@pytest.mark.parametrize("gap", [1.6, 2.5])
def test_no_merge_across_long_silence(gap: float) -> None:
    frag = [(0.0, 0.3, "and"), (0.35, 0.6, "then")]
    rest = spaced("we left the building quickly.", 0.6 + gap)
    ok = [(0.0, 0.4, "Okay.")]
    other = spaced("The next part starts here.", 0.4 + gap)
    for first, second, n_first in ((frag, rest, "and then"), (ok, other, "Okay.")):
        lines = build_lines(words(*first, *second), duration=10.0)
        assert len(lines) == 2
        assert lines[0].text == n_first
        assert lines[0].end - lines[0].start < 1.0


def test_merge_never_crosses_more_than_the_limit_when_gap_just_below() -> None:
    frag = [(0.0, 0.3, "and"), (0.35, 0.6, "then")]
    rest = spaced("we left the building quickly.", 0.6 + 1.4)
    lines = build_lines(words(*frag, *rest), duration=6.0)
    assert texts(lines) == ["and then we left the building quickly."]


# -- build_lines: long lines ---------------------------------------------------------------------------


def test_long_line_is_split_at_its_longest_pause() -> None:
    spec, t = [], 0.0
    for i in range(32):
        spec.append((round(t, 3), round(t + 0.4, 3), f"w{i}"))
        t += 0.4 + (0.5 if i == 17 else 0.1)  # one 0.5 s pause (below the 0.6 s split) after word 17
    spec[-1] = (spec[-1][0], spec[-1][1], "end.")
    ws = words(*spec)
    assert ws[-1].end - ws[0].start > MAX_LINE_S
    lines = build_lines(ws, duration=20.0)
    assert len(lines) == 2
    assert lines[0].text.split()[-1] == "w17"
    assert lines[1].text.split()[0] == "w18"
    assert lines[0].end == pytest.approx(spec[17][1])
    assert lines[1].start == pytest.approx(spec[18][0])
    assert all(ln.end - ln.start <= MAX_LINE_S for ln in lines)


def test_very_long_line_is_split_recursively() -> None:
    rng = np.random.default_rng(3)
    spec, t = [], 0.0
    for i in range(80):  # ~ 40 s of run-on speech without punctuation
        spec.append((round(t, 3), round(t + 0.35, 3), f"w{i}"))
        t += 0.35 + float(rng.uniform(0.05, 0.25))
    lines = build_lines(words(*spec), duration=t + 1.0)
    assert len(lines) >= 4
    assert all(ln.end - ln.start <= MAX_LINE_S for ln in lines)
    assert " ".join(texts(lines)) == " ".join(w for _, _, w in spec)  # nothing lost or reordered


# -- pauses --------------------------------------------------------------------------------------------


def test_pause_after_runs_to_next_line_and_to_the_end() -> None:
    ws = words(*spaced("First line is here.", 0.5), *spaced("Second one follows.", 3.0))
    lines = build_lines(ws, duration=6.0)
    assert len(lines) == 2
    assert lines[0].pause_after == pytest.approx(lines[1].start - lines[0].end, abs=1e-9)
    assert lines[0].slot_end == pytest.approx(lines[1].start)
    assert lines[1].pause_after == pytest.approx(6.0 - lines[1].end, abs=1e-9)
    assert lines[1].slot_end == pytest.approx(6.0)


def test_set_pauses_never_negative() -> None:
    lines = [Line(0, 0.0, 1.0, "a"), Line(1, 0.9, 2.0, "b"), Line(2, 2.5, 3.2, "c")]
    set_pauses(lines, duration=3.0)  # overlapping lines and a duration shorter than the last line
    assert [ln.pause_after for ln in lines] == [0.0, 0.5, 0.0]


# -- usable_words --------------------------------------------------------------------------------------


def segment(text: str, start: float, **quality: float) -> TranscriptSegment:
    spec = spaced(text, start)
    return TranscriptSegment(spec[0][0], spec[-1][1], " " + text, tuple(words(*spec)), **quality)


def test_hallucinated_and_repeated_segments_are_dropped() -> None:
    segs = (
        segment("We start here.", 0.0),
        segment("Thanks for watching!", 2.0, no_speech_prob=0.7, avg_logprob=-1.2),  # hallucination
        segment("Quiet but real.", 4.0, no_speech_prob=0.7, avg_logprob=-0.5),  # only one flag: kept
        segment("Unsure but speech.", 6.0, no_speech_prob=0.3, avg_logprob=-1.5),  # kept
        segment("la la la la la la", 8.0, compression_ratio=2.5),  # repetition loop
        segment("We go on.", 10.0),
        segment(" we go on. ", 12.0),  # verbatim repeat of the previous segment
        segment("Something else.", 14.0),
        segment("We go on.", 16.0),  # not the previous one: kept
    )
    transcript = Transcript("en", 0.99, 18.0, segs, "tiny.en")
    got = " ".join(w.text.strip() for w in usable_words(transcript))
    assert got == ("We start here. Quiet but real. Unsure but speech. We go on. Something else. We go on.")


def test_usable_words_skip_empty_words() -> None:
    seg = TranscriptSegment(
        0.0, 1.0, " a b", (Word(0.0, 0.3, " a"), Word(0.3, 0.4, " "), Word(0.5, 0.9, " b"))
    )
    got = usable_words(Transcript("en", 1.0, 1.0, (seg,), "m"))
    assert [w.text for w in got] == [" a", " b"]


def test_build_lines_from_a_transcript() -> None:
    segs = (
        segment("This is the first sentence.", 0.2),
        segment("Thank you.", 3.0, no_speech_prob=0.9, avg_logprob=-2.0),
        segment("And this is the second one.", 5.0),
    )
    transcript = Transcript("en", 0.9, 8.0, segs, "tiny.en")
    lines = build_lines(usable_words(transcript), transcript.duration)
    assert texts(lines) == ["This is the first sentence.", "And this is the second one."]
    assert lines[-1].slot_end == pytest.approx(8.0)


# -- refine_line_edges ---------------------------------------------------------------------------------

RATE = 16_000


def speech_signal(
    bursts: list[tuple[float, float]], dips: list[tuple[float, float]], duration: float
) -> np.ndarray:
    """Harmonic bursts with a 4 Hz syllable envelope over a -60 dBFS noise bed; `dips` are silent gaps
    inside bursts (stop closures)."""
    rng = np.random.default_rng(11)
    t = np.arange(int(duration * RATE)) / RATE
    x = rng.standard_normal(t.size) * 1e-3
    ramp = int(0.005 * RATE)
    for i, (s, e) in enumerate(bursts):
        m = (t >= s) & (t < e)
        tt = t[m] - s
        tone = sum(np.sin(2 * np.pi * (120 + 15 * i) * k * tt) / k for k in range(1, 10))
        env = 0.2 * (0.7 - 0.3 * np.cos(2 * np.pi * 4 * tt))
        edge = np.ones(tt.size)
        edge[:ramp] = np.linspace(0, 1, ramp)
        edge[-ramp:] = np.linspace(1, 0, ramp)
        x[m] += tone * env * edge
    for s, e in dips:
        m = (t >= s) & (t < e)
        x[m] = rng.standard_normal(int(m.sum())) * 1e-3
    return x.astype(np.float32)


def test_refine_snaps_edges_to_the_speech() -> None:
    truth = [(0.8, 2.4), (3.0, 4.6), (5.5, 7.2), (8.5, 9.6), (9.8, 11.0)]
    dips = [(3.15, 3.21), (7.0, 7.06)]  # 60 ms, between a true edge and the recognised one
    duration = 12.0
    audio = speech_signal(truth, dips, duration)
    recognised = [
        (0.5, 2.7),  # early start, late end
        (3.3, 4.3),  # late start past a dip, early end
        (5.2, 6.9),  # early start, early end before a dip
        (8.8, 9.9),  # late start, end late into the next line's speech
        (10.1, 10.7),  # late start, early end
    ]
    lines = [Line(i, s, e, f"line {i}") for i, (s, e) in enumerate(recognised)]
    set_pauses(lines, duration)
    refine_line_edges(lines, ArrayReader(audio), duration)

    for line, (start, end) in zip(lines, truth, strict=True):
        assert abs(line.start - start) <= 0.030, (line, start)
        assert abs(line.end - end) <= 0.050, (line, end)
    for a, b in zip(lines, lines[1:], strict=False):
        assert a.end <= b.start
        assert a.pause_after == pytest.approx(b.start - a.end, abs=1e-6)
    assert lines[-1].pause_after == pytest.approx(duration - lines[-1].end, abs=1e-6)


def test_refine_crosses_a_short_dip_but_not_a_pause() -> None:
    # 60 ms dips just after the true onset and just before the true end, inside the search windows
    audio = speech_signal([(1.0, 3.0)], [(1.15, 1.21), (2.75, 2.81)], 4.0)
    lines = [Line(0, 1.3, 2.7, "x")]  # recognised 0.3 s late at both ends
    refine_line_edges(lines, ArrayReader(audio), 4.0)
    assert abs(lines[0].start - 1.0) <= 0.030
    assert abs(lines[0].end - 3.0) <= 0.050

    # a 150 ms silence is a real pause: the onset is the speech after it, the end the speech before it
    audio = speech_signal([(1.0, 3.0)], [(1.15, 1.30), (2.70, 2.85)], 4.0)
    lines = [Line(0, 1.4, 2.6, "x")]
    refine_line_edges(lines, ArrayReader(audio), 4.0)
    assert abs(lines[0].start - 1.30) <= 0.030
    assert abs(lines[0].end - 2.70) <= 0.050


def test_refine_edges_never_cross_neighbours() -> None:
    truth = [(1.0, 2.0), (2.3, 3.5)]
    audio = speech_signal(truth, [], 5.0)
    # line 0 was recognised far too long; line 1's onset search reaches back before line 0's recognised end
    lines = [Line(0, 1.0, 2.6, "a"), Line(1, 2.65, 3.5, "b")]
    set_pauses(lines, 5.0)
    refine_line_edges(lines, ArrayReader(audio), 5.0)
    assert lines[0].end <= lines[1].start
    assert abs(lines[1].start - 2.3) <= 0.030
    assert abs(lines[0].end - 2.0) <= 0.050
    assert lines[0].start < lines[0].end < lines[1].start < lines[1].end <= 5.0


def test_refine_does_not_guess_an_onset_outside_its_search_window() -> None:
    # continuous speech from 1.0 s with 80 ms stop closures every 200 ms: quiet frames, but no real pause
    dips = [(round(t, 2), round(t + 0.08, 2)) for t in np.arange(1.1, 3.9, 0.2)]
    audio = speech_signal([(1.0, 4.0)], dips, 5.0)
    lines = [Line(0, 2.0, 3.0, "x")]  # recognised 1 s late: the true onset is beyond the 0.6 s search
    refine_line_edges(lines, ArrayReader(audio), 5.0)
    assert lines[0].start == 2.0  # kept, not moved to the search floor
    assert 2.9 <= lines[0].end <= 3.31


def test_refine_keeps_edges_when_speech_does_not_stand_out() -> None:
    rng = np.random.default_rng(5)
    audio = (rng.standard_normal(5 * RATE) * 0.1).astype(np.float32)  # loud noise, no speech edges
    lines = [Line(0, 1.0, 2.0, "a"), Line(1, 3.0, 4.0, "b")]
    refine_line_edges(lines, ArrayReader(audio), 5.0)
    assert [(ln.start, ln.end) for ln in lines] == [(1.0, 2.0), (3.0, 4.0)]


# -- load_plan -----------------------------------------------------------------------------------------


def write_plan(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "segments.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def test_plan_round_trips(tmp_path: Path) -> None:
    ws = words(*spaced("Hello there my friend.", 0.4), *spaced("How are you doing today?", 2.5))
    lines = build_lines(ws, duration=5.0)
    lines[1].speaker = "S2"
    transcript = Transcript("en", 0.98765, 5.0, (), "tiny.en")
    path = write_plan(tmp_path, plan_to_json(lines, transcript))
    language, loaded = load_plan(path)
    assert language == "en"
    assert loaded == lines
    assert loaded[-1].pause_after == pytest.approx(5.0 - loaded[-1].end)


def test_plan_edits_are_respected(tmp_path: Path) -> None:
    data = {
        "version": 1,
        "source_language": "de",
        "duration": 10.0,
        "lines": [
            {"index": 0, "start": 0.5, "end": 2.0, "text": "  Hallo Welt.  "},
            {"index": 1, "start": 3.0, "end": 4.5, "text": "Zweite Zeile.", "speaker": "S2"},
        ],
    }
    language, lines = load_plan(write_plan(tmp_path, data))
    assert language == "de"
    assert [ln.text for ln in lines] == ["Hallo Welt.", "Zweite Zeile."]
    assert [ln.pause_after for ln in lines] == [1.0, 5.5]
    assert lines[1].speaker == "S2"


def _plan(*lines: dict) -> dict:
    return {"version": 1, "source_language": "en", "duration": 20.0, "lines": list(lines)}


GOOD0 = {"index": 0, "start": 0.0, "end": 1.0, "text": "One."}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"lines": [ {"start": 0, ', "not valid JSON"),
        (_plan(GOOD0, {"index": 1, "start": 2.0, "end": 3.0}), "line 1"),
        (_plan(GOOD0, {"index": 1, "start": 2.0, "end": 3.0, "text": None}), "line 1"),
        (_plan(GOOD0, {"index": 1, "start": 2.0, "end": 3.0, "text": "   "}), "line 1 has empty text"),
        (_plan(GOOD0, {"index": 1, "start": 3.0, "end": 3.0, "text": "x"}), "line 1 ends before it starts"),
        (_plan(GOOD0, {"index": 1, "start": 3.0, "end": 2.5, "text": "x"}), "line 1 ends before it starts"),
        (_plan(GOOD0, {"index": 1, "start": "soon", "end": 3.0, "text": "x"}), "line 1"),
        (
            _plan(GOOD0, {"index": 1, "start": 0.5, "end": 3.0, "text": "x"}),
            "line 1 starts before line 0 ends",
        ),
        (_plan(), "has no lines"),
        ({"segments": []}, "'lines'"),
    ],
)
def test_plan_errors_name_the_line(tmp_path: Path, content: object, message: str) -> None:
    path = write_plan(tmp_path, content)
    with pytest.raises(InputError) as info:
        load_plan(path)
    text = str(info.value)
    assert message in text
    assert "segments.json" in text
    assert "\n" not in text.strip()
