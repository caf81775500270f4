"""Diarization: the offline engine's error rate on espeak-ng conversations, the speaker hints, and the pure
word/line speaker mapping (tests/speakers_audio.py builds the audio and its truth)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from core.errors import ConfigError
from models.base import Word
from models.diarization import EmbeddingDiarizer, SpeakerHints, Turn
from tasks.diarize import assign_speakers, diarize, rename_speakers, split_lines_at_speaker_changes
from tasks.segment import Line, build_lines
from tests.speakers_audio import Conversation, der, random_conversation

pytestmark = pytest.mark.timeout(300)

TWO = ["en+f3", "en-us+m3"]
THREE = ["en+f3", "en-us+m3", "en-gb+m7"]
CLOSE_MALES = ["en-us+m3", "en-gb+m7"]  # different accents, cosine ~0.89 (shared docs environment.md)


@pytest.fixture(scope="module")
def convs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Conversation]:
    d = tmp_path_factory.mktemp("speakers")
    return {
        # (a) two speakers alternating, 0.6-2 s pauses
        "two": random_conversation(TWO, 24, (0.6, 2.0), d / "two.wav", seed=0, short_reply_every=4),
        # (b) three speakers, quick turns (0.25-0.7 s), short replies among them
        "three": random_conversation(THREE, 36, (0.25, 0.7), d / "three.wav", seed=0, short_reply_every=4),
        "close": random_conversation(
            CLOSE_MALES, 36, (0.6, 2.0), d / "close.wav", seed=1, short_reply_every=4
        ),
        "one": random_conversation(["en-gb+m7"], 20, (0.25, 1.0), d / "one.wav", seed=3),
    }


def _run(conv: Conversation, hints: SpeakerHints | None = None) -> list[Turn]:
    return EmbeddingDiarizer().diarize(conv.path, [(w.start, w.end) for w in conv.words], hints)


def _der(conv: Conversation, turns: list[Turn]) -> float:
    return der(conv, [(t.start, t.end, t.speaker) for t in turns])


def _speakers(turns: list[Turn]) -> int:
    return len({t.speaker for t in turns})


@pytest.mark.parametrize("name, expected", [("two", 2), ("three", 3)])
def test_automatic_speaker_count_and_error_rate(
    convs: dict[str, Conversation], name: str, expected: int
) -> None:
    conv = convs[name]
    turns = _run(conv)
    assert _speakers(turns) == expected
    assert _der(conv, turns) <= 0.05
    assert all(a.end <= b.start for a, b in zip(turns, turns[1:], strict=False))  # sorted, no overlap


def test_single_speaker_is_one_speaker(convs: dict[str, Conversation]) -> None:
    turns = _run(convs["one"])
    assert _speakers(turns) == 1
    assert _der(convs["one"], turns) <= 0.05


def test_hints_are_honoured(convs: dict[str, Conversation]) -> None:
    # two close male voices told apart when the count is given
    close = convs["close"]
    turns = _run(close, SpeakerHints.of(num=2))
    assert _speakers(turns) == 2 and _der(close, turns) <= 0.05
    assert _speakers(_run(convs["one"], SpeakerHints.of(min_=2))) == 2
    assert _speakers(_run(convs["three"], SpeakerHints.of(max_=2))) == 2
    assert _speakers(_run(convs["two"], SpeakerHints.of(num=3))) == 3
    assert _speakers(_run(convs["three"], SpeakerHints.of(min_=2, max_=4))) == 3


def test_hint_contradictions_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="min_speakers"):
        SpeakerHints.of(min_=3, max_=2)
    with pytest.raises(ConfigError, match="num_speakers"):
        SpeakerHints.of(num=0)
    with pytest.raises(ConfigError, match="outside"):
        SpeakerHints.of(num=5, max_=4)


def test_speaker_changes_inside_a_line_split_it(convs: dict[str, Conversation]) -> None:
    """Without punctuation (as a recogniser often writes quick exchanges) the quick turns fall inside
    lines; after splitting, every line is one true speaker and the speakers read S1, S2, S3."""
    conv = convs["three"]
    words = [Word(w.start, w.end, re.sub(r"[.,?!]", "", w.text)) for w in conv.words]
    lines = build_lines(words, conv.duration)

    def truth(t: float) -> str:
        return min(conv.utterances, key=lambda u: max(u.start - t, t - u.end, 0.0)).speaker

    def true_speakers(line: Line) -> set[str]:
        return {
            truth((w.start + w.end) / 2) for w in words if line.start <= (w.start + w.end) / 2 <= line.end
        }

    assert sum(len(true_speakers(line)) > 1 for line in lines) >= 3  # the case this is about
    turns = rename_speakers(_run(conv))
    speakers = assign_speakers(words, turns)
    assert speakers[0] == "S1" and set(speakers) == {"S1", "S2", "S3"}
    split = split_lines_at_speaker_changes(lines, list(zip(words, speakers, strict=True)), conv.duration)
    assert len(split) > len(lines)
    wrong = sum(len(true_speakers(line)) > 1 for line in split)
    assert wrong <= 1, f"{wrong} lines still hold two speakers"
    assert [line.index for line in split] == list(range(len(split)))
    assert " ".join(line.text for line in split).split() == " ".join(w.text for w in words).split()
    assert all(a.end <= b.start and a.pause_after >= 0 for a, b in zip(split, split[1:], strict=False))
    # one name per true speaker (a short reply may go to the wrong one: DER above is not zero)
    pairs = [(truth((ln.start + ln.end) / 2), ln.speaker) for ln in split if len(true_speakers(ln)) == 1]
    majority = {v: Counter(s for t, s in pairs if t == v).most_common(1)[0] for v in THREE}
    assert len({name for name, _ in majority.values()}) == 3
    assert sum(n for _, n in majority.values()) >= len(pairs) - 2


def test_assign_speakers_and_split_lines_pure() -> None:
    words = [Word(0.0, 0.4, " Are"), Word(0.4, 0.8, " you"), Word(0.8, 1.2, " coming?"),
             Word(1.5, 1.9, " Yes"), Word(1.9, 2.3, " soon."), Word(2.35, 2.6, " Good.")]  # fmt: skip
    turns = [Turn(0.0, 1.25, "B"), Turn(1.45, 2.3, "A"), Turn(2.3, 2.7, "B")]
    speakers = assign_speakers(words, turns)
    assert speakers == ["S1", "S1", "S1", "S2", "S2", "S1"]
    assert assign_speakers(words, []) == ["S1"] * 6
    # a word no turn covers takes the nearest turn
    assert assign_speakers([Word(5.0, 5.2, " far")], turns) == ["S1"]
    line = Line(0, 0.0, 2.6, "Are you coming? Yes soon. Good.", 0.4, voice="Ethan")
    split = split_lines_at_speaker_changes([line], list(zip(words, speakers, strict=True)), 3.0)
    assert [(ln.text, ln.speaker, ln.start, ln.end) for ln in split] == [
        ("Are you coming?", "S1", 0.0, 1.2),
        ("Yes soon.", "S2", 1.5, 2.3),
        ("Good.", "S1", 2.35, 2.6),
    ]
    assert [ln.pause_after for ln in split] == [0.3, 0.05, 0.4]
    assert all(ln.voice == "Ethan" for ln in split)
    assert rename_speakers([Turn(2, 3, "x"), Turn(0, 1, "y")]) == [Turn(0, 1, "S1"), Turn(2, 3, "x" and "S2")]


class _CountingDiarizer:
    name = "counting"

    def __init__(self) -> None:
        self.calls = 0

    def identity(self) -> dict:
        return {"engine": self.name}

    def diarize(self, audio_path, speech=None, hints=None, progress=None):  # noqa: ANN001
        self.calls += 1
        return [Turn(0.5, 1.0, "SPEAKER_07"), Turn(1.2, 2.0, "SPEAKER_03")]


def test_task_caches_by_content_key(tmp_path: Path) -> None:
    engine = _CountingDiarizer()
    out = tmp_path / "work" / "diarization.json"
    words = [Word(0.5, 1.0, " hi"), Word(1.2, 2.0, " there")]
    first, key = diarize.fn(tmp_path / "a.wav", "audio-k", words, "words-k", SpeakerHints(), out, engine)
    again, key2 = diarize.fn(tmp_path / "a.wav", "audio-k", words, "words-k", SpeakerHints(), out, engine)
    assert (
        engine.calls == 1 and key == key2 and first == again == [Turn(0.5, 1.0, "S1"), Turn(1.2, 2.0, "S2")]
    )
    _, key3 = diarize.fn(tmp_path / "a.wav", "audio-k", words, "words-k", SpeakerHints(num=2), out, engine)
    assert engine.calls == 2 and key3 != key


def test_pyannote_missing_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pyannote.audio", None)  # as on a machine without the extra
    from models.pyannote_diarizer import PyannoteDiarizer

    engine = PyannoteDiarizer("pyannote/speaker-diarization-community-1")
    assert engine.identity()["engine"] == "pyannote"
    with pytest.raises(ConfigError, match=r"pip install 'pyannote\.audio"):
        engine.diarize(tmp_path / "missing.wav")


def test_error_rate_over_real_whisper_words(convs: dict[str, Conversation], tiny_en_model: Path) -> None:
    """The same measurement as the product makes it: the real tiny.en recognises the quick three-speaker
    conversation, its segments (with at least one speaker change inside one, the acceptance case) and
    its word times are what the diarizer and the line split see; the error rate is still <= 5 % with
    the automatic speaker count, and after the split no line holds two true speakers but one."""
    from models.whisper_asr import FasterWhisperTranscriber

    conv = convs["three"]
    transcript = FasterWhisperTranscriber(str(tiny_en_model), device="cpu").transcribe(conv.path, "en")
    words = [w for seg in transcript.segments for w in seg.words]
    assert len(words) >= 0.8 * len(conv.words)

    def truth(t: float) -> str:
        return min(conv.utterances, key=lambda u: max(u.start - t, t - u.end, 0.0)).speaker

    def speakers_in(start: float, end: float) -> set[str]:
        return {truth((w.start + w.end) / 2) for w in words if start <= (w.start + w.end) / 2 <= end}

    mixed = [s for s in transcript.segments if len(speakers_in(s.start, s.end)) > 1]
    assert mixed, "no Whisper segment holds a speaker change: the case this test is about is missing"
    turns = rename_speakers(
        EmbeddingDiarizer().diarize(conv.path, [(w.start, w.end) for w in words if w.end > w.start], None)
    )
    assert _speakers(turns) == 3
    assert _der(conv, turns) <= 0.05, f"DER {_der(conv, turns):.3f}"
    lines = build_lines(words, conv.duration)
    split = split_lines_at_speaker_changes(
        lines, list(zip(words, assign_speakers(words, turns), strict=True)), conv.duration
    )
    assert sum(len(speakers_in(line.start, line.end)) > 1 for line in split) <= 1
