"""text/subtitles.py: cue timing rules, SRT and WebVTT files, line wrapping."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import srt

from text.subtitles import LINE_CHARS, MIN_CUE_S, Cue, cues_for_track, write_srt, write_vtt

TIMINGS = [
    (0.50, 2.10, "Good morning, everyone."),
    (2.60, 2.90, "Hi."),  # short clip, next one far away: stretched to MIN_CUE_S
    (5.00, 5.30, "Oh."),  # short clip, next one 0.5 s later: must end before it
    (5.50, 8.25, "Today we are going to talk about how rivers shape the land around them over centuries."),
    (8.25, 9.00, "Right after."),  # starts exactly where the previous clip ends
    (11.6, 12.0, "The end."),  # the video ends 0.3 s after it starts
]
DURATION = 11.9


def check_cue_rules(cues: list[Cue], timings: list[tuple[float, float, str]], duration: float) -> None:
    assert len(cues) == len(timings)
    for i, (cue, (start, end, _)) in enumerate(zip(cues, timings, strict=True)):
        next_start = timings[i + 1][0] if i + 1 < len(timings) else duration
        assert cue.start == start
        assert cue.start < cue.end <= duration
        assert cue.end >= min(end, next_start - 0.001, duration) - 1e-9  # never shorter than the clip
        if i + 1 < len(cues):
            assert cue.end < cues[i + 1].start, (cue, cues[i + 1])  # no overlap
        # readable: at least MIN_CUE_S unless the next cue (or the video end) comes first
        assert cue.end - cue.start >= min(MIN_CUE_S, next_start - start - 0.001, duration - start) - 1e-9


def test_cue_timing_rules() -> None:
    cues = cues_for_track(TIMINGS, DURATION)
    check_cue_rules(cues, TIMINGS, DURATION)
    assert cues[1].end == pytest.approx(2.60 + MIN_CUE_S)
    assert cues[2].end == pytest.approx(5.499)
    assert cues[3].end == pytest.approx(8.249)
    assert cues[-1].end == pytest.approx(DURATION - 0.001)
    assert cues[0].end == pytest.approx(2.10)  # long enough already: kept


def test_cues_never_overlap_even_when_clips_start_close_together() -> None:
    timings = [(1.0, 1.04, "a"), (1.05, 1.3, "b"), (1.12, 2.0, "c"), (4.0, 4.2, "d")]
    cues = cues_for_track(timings, 5.0)
    check_cue_rules(cues, timings, 5.0)


def test_srt_round_trips(tmp_path: Path) -> None:
    cues = cues_for_track(TIMINGS, DURATION)
    path = write_srt(cues, tmp_path / "dub.en.srt")
    parsed = list(srt.parse(path.read_text(encoding="utf-8")))
    assert [s.index for s in parsed] == list(range(1, len(cues) + 1))
    assert [s.content for s in parsed] == [c.text for c in cues]
    for sub, cue in zip(parsed, cues, strict=True):
        assert abs(sub.start.total_seconds() - cue.start) <= 0.001
        assert abs(sub.end.total_seconds() - cue.end) <= 0.001
        assert sub.start < sub.end
    for a, b in zip(parsed, parsed[1:], strict=False):
        assert a.end <= b.start
    # the file is exactly what srt itself composes
    assert path.read_text(encoding="utf-8") == srt.compose(parsed, reindex=False)


VTT_TIME = r"(\d{2}):([0-5]\d):([0-5]\d)\.(\d{3})"


def _seconds(m: re.Match[str], at: int) -> float:
    h, mi, s, ms = (int(m.group(at + k)) for k in range(4))
    return h * 3600 + mi * 60 + s + ms / 1000


def test_webvtt_is_well_formed(tmp_path: Path) -> None:
    timings = [*TIMINGS[:-1], (3725.25, 3727.0, "Over an hour in.")]
    cues = cues_for_track(timings, 3730.0)
    path = write_vtt(cues, tmp_path / "dub.en.vtt", "en")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("WEBVTT\n")
    blocks = text.strip("\n").split("\n\n")
    header, cue_blocks = blocks[0], blocks[1:]
    assert header.splitlines()[0] == "WEBVTT"
    assert "-->" not in header
    assert len(cue_blocks) == len(cues)
    for block, cue in zip(cue_blocks, cues, strict=True):
        rows = block.split("\n")
        timing = next(r for r in rows if "-->" in r)
        m = re.fullmatch(VTT_TIME + " --> " + VTT_TIME, timing)
        assert m, timing
        assert _seconds(m, 1) == pytest.approx(cue.start, abs=0.0005)
        assert _seconds(m, 5) == pytest.approx(cue.end, abs=0.0005)
        assert "\n".join(rows[rows.index(timing) + 1 :]) == cue.text
    assert "01:02:05.250 --> 01:02:07.000" in text


def test_webvtt_timestamps_carry_over_correctly(tmp_path: Path) -> None:
    cues = [Cue(59.9996, 61.0, "a"), Cue(3599.9996, 3601.0, "b")]
    text = write_vtt(cues, tmp_path / "x.vtt", "en").read_text(encoding="utf-8")
    assert "00:01:00.000 --> 00:01:01.000" in text
    assert "01:00:00.000 --> 01:00:01.000" in text


# -- wrapping ------------------------------------------------------------------------------------------

LATIN = [
    "The quick brown fox jumps over the lazy dog while the farmer watches from afar.",  # 79 chars
    "Today we are going to talk about how rivers shape the land around them.",  # 71
    "We will meet again tomorrow morning at the old station, I promise.",  # 66
    "This sentence is a little longer than one subtitle line.",  # 56
]


def _wrapped(text: str) -> list[str]:
    (cue,) = cues_for_track([(0.0, 2.0, text)], 3.0)
    return cue.text.split("\n")


@pytest.mark.parametrize("text", LATIN)
def test_latin_text_wraps_onto_two_lines_within_the_guideline(text: str) -> None:
    rows = _wrapped(text)
    assert len(rows) == 2, rows
    assert all(0 < len(r) <= LINE_CHARS for r in rows), [len(r) for r in rows]
    assert " ".join(rows) == text  # only spaces became line breaks


def test_short_text_stays_on_one_line() -> None:
    assert _wrapped("Short and sweet.") == ["Short and sweet."]
    exactly = "x" * 20 + " " + "y" * 21
    assert _wrapped(exactly) == [exactly]


def test_very_long_latin_text_still_uses_two_lines() -> None:
    text = "I never thought that we would end up here, in this small town by the sea, after all those years."
    rows = _wrapped(text)
    assert len(rows) == 2
    assert " ".join(rows) == text
    assert max(len(r) for r in rows) <= (len(text) + 1) // 2 + 8


@pytest.mark.parametrize(
    "text",
    [
        "这是一个很长的中文句子，用来测试字幕是否会正确地换行显示在屏幕上。",
        "今日はとても良い天気なので、公園まで散歩に行きましょう。",
        "오늘은 날씨가 정말 좋아서 공원까지 산책하러 가기로 했습니다.",
    ],
)
def test_cjk_text_wraps(text: str) -> None:
    rows = _wrapped(text)
    assert len(rows) == 2
    assert "".join(rows) == text
    assert all(len(r) <= LINE_CHARS // 2 for r in rows), [len(r) for r in rows]
    assert abs(len(rows[0]) - len(rows[1])) <= 1


def test_short_cjk_text_is_not_wrapped() -> None:
    assert _wrapped("你好，世界。") == ["你好，世界。"]


def test_webvtt_escapes_markup_characters_and_reads_them_back(tmp_path: Path) -> None:
    from tasks.segment import lines_from_subtitles

    said = ["Fish & chips <3", "a --> b > c", "R&D: <i>not</i> a tag"]
    cues = [Cue(1.0 + 2 * n, 2.5 + 2 * n, text) for n, text in enumerate(said)]
    path = write_vtt(cues, tmp_path / "dub.en.vtt", "en")
    body = path.read_text(encoding="utf-8")
    assert "Fish &amp; chips &lt;3" in body and "a --&gt; b &gt; c" in body
    assert "R&amp;D: &lt;i&gt;not&lt;/i&gt; a tag" in body
    assert body.count("-->") == len(cues)  # only the timing lines
    lines = lines_from_subtitles(path)
    assert [ln.text for ln in lines] == said
    assert [(ln.start, ln.end) for ln in lines] == [(c.start, c.end) for c in cues]
