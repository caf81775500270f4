"""The closed-loop check: a dub track of espeak-ng English speech placed at known times, encoded as the
assembly encodes it, re-transcribed with the real tiny.en Whisper model and scored line by line."""

from __future__ import annotations

import json
import logging
import subprocess
from dataclasses import replace
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf
import soxr

from core.errors import ConfigError
from tasks.assemble import LineTiming
from tasks.media import encode_audio
from tasks.translate import TranslatedLine
from tasks.verify import (
    MAX_GAP_S,
    assign_words,
    compact,
    error_rate,
    line_spans,
    normalise,
    require_model_for,
    verify,
    verify_track,
)

RATE = 48_000
SENTENCES = [  # ones tiny.en hears without error at espeak-ng rates 150-180 wpm, in any position
    "Two blue fish swam in the tank.",
    "A rod is used to catch pink salmon.",
    "The salt breeze came across from the sea.",
    "Help the woman get back to her feet.",
]
WRONG = "Rice is often served in round bowls."  # never spoken in the track
GAPS_S = [0.35, 2.5, 0.6]  # a close neighbour (margins meet halfway), a gap long enough to be shortened
FIRST_INDEX = 7  # line indices need not start at 0


def espeak_clip(text: str, path: Path) -> np.ndarray:
    """English speech at 24 kHz, as a TTS engine delivers it."""
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(path), text], check=True)
    audio, rate = sf.read(path, dtype="float32")
    return np.asarray(soxr.resample(audio, rate, 24_000), dtype=np.float32)


@pytest.fixture(scope="module")
def dub(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[TranslatedLine], list[LineTiming]]:
    work = tmp_path_factory.mktemp("verify")
    clips = [
        np.asarray(soxr.resample(espeak_clip(s, work / f"{n}.wav"), 24_000, RATE), dtype=np.float32)
        for n, s in enumerate(SENTENCES)
    ]
    starts, t = [], 0.8
    for n, clip in enumerate(clips):
        starts.append(round(t, 3))
        t += clip.size / RATE + (GAPS_S[n] if n < len(GAPS_S) else 0.0)
    total = int((t + 1.0) * RATE)
    track = np.zeros((total, 2), dtype=np.float32)
    for start, clip in zip(starts, clips, strict=True):
        at = int(round(start * RATE))
        track[at : at + clip.size] += 0.6 * clip[:, None]
    audio_file = encode_audio(track, RATE, work / "dub.en.mka", "aac")
    lines, timings = [], []
    for n, (start, clip) in enumerate(zip(starts, clips, strict=True)):
        placed = round(clip.size / RATE, 3)
        index = FIRST_INDEX + n
        lines.append(TranslatedLine(index, start, start + placed, 0.2, f"source {n}", SENTENCES[n]))
        timings.append(LineTiming(index, start, start + placed + 0.2, placed, placed, 1.0, 0.0))
    return audio_file, lines, timings


def test_correct_texts_score_low(dub, tiny_en_model: Path) -> None:
    audio_file, lines, timings = dub
    # lines in another order than the timings: records are matched by index, not by position
    result = verify_track(audio_file, lines[::-1], timings, "en", str(tiny_en_model))
    assert [c.index for c in result.lines] == [t.index for t in timings]
    for check, sentence in zip(result.lines, SENTENCES, strict=True):
        assert check.metric == "wer" and check.words == len(sentence.split())
        assert check.wer < 0.2 and not check.flagged, (check.index, check.wer, check.heard)
    assert result.flagged == 0 and result.track_wer < 0.2
    assert result.metric == "wer" and result.model == tiny_en_model.name


def test_wrong_text_is_flagged(dub, tiny_en_model: Path) -> None:
    audio_file, lines, timings = dub
    wrong = [replace(line, text=WRONG) if n == 1 else line for n, line in enumerate(lines)]
    result = verify_track(audio_file, wrong, timings, "en", str(tiny_en_model))
    by_index = {c.index: c for c in result.lines}
    assert by_index[FIRST_INDEX + 1].wer >= 0.6 and by_index[FIRST_INDEX + 1].flagged
    for n in (0, 2, 3):
        check = by_index[FIRST_INDEX + n]
        assert check.wer < 0.2 and not check.flagged, (check.index, check.wer, check.heard)
    assert result.flagged == 1 and result.track_wer > 0.1


def test_character_error_rate_for_cjk() -> None:
    metric, rate, errors, units = error_rate("今日は、良い天気です。", "今日は いい 天気です", "ja")
    assert metric == "cer" and units == 9  # 今日は良い天気です: punctuation and spaces dropped
    assert rate == pytest.approx(jiwer.cer("今日は良い天気です", "今日はいい天気です")) and errors == 1
    assert error_rate("我们明天见。", "我们明天见", "zh")[:2] == ("cer", 0.0)
    assert error_rate("안녕하세요, 반갑습니다", "안녕하세요 반갑습니다!", "ko")[:2] == ("cer", 0.0)
    assert normalise("ＡＢＣ　ｄｅｆ", "ja") == list("abcdef")  # full-width forms folded, spaces dropped
    assert error_rate("猫が3匹います", "猫が三匹います", "ja")[1] == 0.0  # digits read as the language does


def test_word_error_rate_normalisation() -> None:
    metric, rate, errors, units = error_rate(
        "He sold 50 bonds, didn't he?", "he sold fifty bonds didnt he", "en"
    )
    assert (metric, rate, errors, units) == ("wer", 0.0, 0, 6)
    ref, hyp = "The boy was there when the sun rose.", "The boy was here when sun rose"
    expected = jiwer.wer(ref.lower().rstrip("."), hyp.lower())
    assert error_rate(ref, hyp, "en")[1] == pytest.approx(expected)
    assert error_rate("Guten Morgen!", "", "de")[1:] == (1.0, 2, 2)  # nothing heard: every word deleted
    assert error_rate("...", "", "fr")[1] == 0.0


def test_english_only_model_refuses_other_languages(dub, tiny_en_model: Path) -> None:
    audio_file, lines, timings = dub
    # the shipped tiny.en lives in a directory called "model": the loaded checkpoint says English-only
    with pytest.raises(ConfigError, match="English-only"):
        verify_track(audio_file, lines, timings, "de", str(tiny_en_model))
    with pytest.raises(ConfigError, match="English-only"):
        require_model_for("tiny.en", "ja")  # by name, before anything is loaded or downloaded
    with pytest.raises(ConfigError, match="English-only"):
        require_model_for("distil-large-v3", "fr")
    require_model_for("tiny.en", "en")
    require_model_for("small", "ja")


def test_spans_stay_between_neighbours() -> None:
    t = [
        LineTiming(0, 0.1, 2.0, 1.5, 1.5, 1.0, 0.0),  # near the track start
        LineTiming(1, 1.8, 4.0, 1.0, 1.0, 1.0, 0.0),  # 0.2 s after line 0
        LineTiming(2, 6.0, 8.0, 0.0, 0.0, 1.0, 0.0),  # nothing placed
        LineTiming(3, 9.0, 10.0, 0.9, 0.9, 1.0, 0.0),  # near the track end
    ]
    spans = line_spans(t, duration=10.0, margin=0.25)
    assert [s.index for s in spans] == [0, 1, 3]
    assert spans[0].lo == 0.0 and spans[0].hi == pytest.approx(1.7)  # halfway to line 1
    assert spans[1].lo == pytest.approx(1.7) and spans[1].hi == pytest.approx(3.05)
    assert spans[2].lo == pytest.approx(8.75) and spans[2].hi == 10.0
    audio = np.arange(10 * 100, dtype=np.float32)  # 100 Hz "audio" whose samples tell their time
    signal, placed = compact(audio, 100, spans)
    assert signal.size == 305 + int(MAX_GAP_S * 100) + 125  # the 5.7 s gap shortened to MAX_GAP_S
    assert signal[round(placed[2].lo * 100)] == 875 and signal[round(placed[1].lo * 100)] == 170
    words = [(0.5, 0.9, " It"), (1.6, 1.75, " is"), (1.8, 2.0, " here"), (3.2, 3.3, " now"), (4.2, 4.4, "!")]
    assert assign_words(words, placed) == {0: "It is", 1: "here now", 3: "!"}


class FakeProgress:
    """StageProgress outside a flow run would start a temporary Prefect server."""

    def __init__(self, stage: str, total: float, unit: str = "items") -> None:
        self.total, self.done = total, 0.0

    def set(self, done: float, total: float | None = None) -> None:
        self.total, self.done = total or self.total, done


def test_task_writes_json_and_logs_figures_only(
    dub, tiny_en_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch
) -> None:
    audio_file, lines, timings = dub
    monkeypatch.setattr("tasks.verify.StageProgress", FakeProgress)
    out = tmp_path / "work" / "verify.en.json"
    with caplog.at_level(logging.INFO, logger="qwen_dub"):
        result = verify.fn("en", audio_file, lines, timings, str(tiny_en_model), out)
    saved = json.loads(out.read_text())
    assert saved["track_wer"] == result.track_wer and len(saved["lines"]) == len(SENTENCES)
    assert {"index", "metric", "wer", "words", "flagged"} <= set(saved["lines"][0])
    logged = " ".join(r.getMessage() for r in caplog.records if "verified" in r.getMessage())
    assert "track_wer=" in logged and "flagged=0" in logged
    spoken = {w.lower().strip(".") for s in SENTENCES for w in s.split() if len(w) > 3}
    assert not spoken & set(logged.lower().split()), logged
    # unchanged inputs: the saved result is reused without recognising again
    monkeypatch.setattr("tasks.verify.verify_track", lambda *a, **k: pytest.fail("not cached"))
    assert verify.fn("en", audio_file, lines, timings, str(tiny_en_model), out) == result


def test_lines_are_recognised_in_bounded_groups(
    dub, tiny_en_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Groups of a few seconds (each decoded and recognised on its own, as a film's are of 5 minutes):
    every line still scores against its own words."""
    from tasks.verify import line_spans, span_groups

    audio_file, lines, timings = dub
    monkeypatch.setattr("tasks.verify.GROUP_S", 6.0)
    assert len(span_groups(line_spans(timings, float("inf")))) >= 2
    result = verify_track(audio_file, lines, timings, "en", str(tiny_en_model))
    for check, sentence in zip(result.lines, SENTENCES, strict=True):
        # a line that opens a group is heard with no audio before it: tiny.en may mishear its first
        # word, but nothing of a neighbour's reaches it and its own end is there
        last = sentence.split()[-1].strip(".").casefold()
        assert check.wer < 0.5 and last in check.heard.casefold(), (check.index, check.wer, check.heard)
