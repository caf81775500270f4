"""Starting from a plan the user already has: subtitles (.srt/.vtt) or a segments.json."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import InputError
from tasks.segment import lines_from_subtitles

SRT = """1
00:00:01,000 --> 00:00:03,140
Welcome to a small town
by the sea.

2
00:00:04,039 --> 00:00:07,423
<i>Every morning</i>, the boats leave.
"""

VTT = """WEBVTT
Kind: captions

NOTE a comment block

intro
00:01.000 --> 00:03.140 align:start
Welcome to a <c.yellow>small</c> town

00:00:04.039 --> 00:00:07.423
Every morning, the boats leave.
"""


@pytest.mark.parametrize(("name", "body"), [("a.srt", SRT), ("a.vtt", VTT)])
def test_cues_become_lines(tmp_path: Path, name: str, body: str) -> None:
    path = tmp_path / name
    path.write_text(body)
    lines = lines_from_subtitles(path)
    assert [(ln.index, ln.start, ln.end) for ln in lines] == [(0, 1.0, 3.14), (1, 4.039, 7.423)]
    assert lines[0].text.startswith("Welcome to a small town")
    assert "<" not in lines[0].text + lines[1].text
    assert lines[1].text == "Every morning, the boats leave."


def test_overlapping_cues_are_trimmed(tmp_path: Path) -> None:
    path = tmp_path / "roll.srt"
    path.write_text("1\n00:00:01,000 --> 00:00:04,000\nOne\n\n2\n00:00:03,000 --> 00:00:05,000\nTwo\n")
    first, second = lines_from_subtitles(path)
    assert first.end == 3.0 and second.start == 3.0


@pytest.mark.parametrize(
    ("name", "body", "message"),
    [
        ("bad.vtt", "00:01.000 --> 00:02.000\nno header\n", "no WEBVTT header"),
        ("bad.vtt", "WEBVTT\n\n00:xx.000 --> 00:02.000\nHi\n", "cue 1 has a malformed timestamp"),
        ("empty.srt", "", "no usable cues"),
    ],
)
def test_bad_subtitles_are_one_clear_error(tmp_path: Path, name: str, body: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(body)
    with pytest.raises(InputError, match=message):
        lines_from_subtitles(path)


def test_vtt_character_references_and_tags(tmp_path: Path) -> None:
    path = tmp_path / "refs.vtt"
    path.write_text(
        "WEBVTT\n\n00:01.000 --> 00:02.000\n<v Anna>Tom &amp; Jerry &lt;3</v>\n\n"
        "00:02.500 --> 00:04.000\n1 &lt; 2 &gt; 0 &nbsp;ok\n"
    )
    first, second = lines_from_subtitles(path)
    assert first.text == "Tom & Jerry <3"
    assert second.text == "1 < 2 > 0 ok"
