"""The length-budget loop, with stub engines at the interface (no models): a line that fits is left
alone, one that needs one shortening gets it, one that never fits stops after the bounded attempts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from core.languages import get_language
from tasks.line import MAX_ATTEMPTS, shorten_overlong
from tasks.synthesize import ClipRecord
from tasks.translate import TranslatedLine, TranslationCache
from text.speech_rate import character_budget, characters_per_second, estimate_seconds

RATE = 24000
SECONDS_PER_CHAR = 0.07  # the stub voice speaks 14.3 characters per second
JA, EN = get_language("ja"), get_language("en")


class StubShortener:
    """Returns the first `max_chars` characters, or a fixed reply."""

    def __init__(self, fixed: str | None = None) -> None:
        self.calls: list[int] = []
        self.fixed = fixed

    def identity(self) -> dict[str, Any]:
        return {"stub": True}

    def shorten(self, source_text: str, text: str, source: Any, target: Any, max_chars: int) -> str:
        self.calls.append(max_chars)
        return self.fixed if self.fixed is not None else text[:max_chars].strip()


@pytest.fixture
def voice(tmp_path: Path):
    """A stub synthesiser: a clip whose speech lasts SECONDS_PER_CHAR per character, with edge silence."""
    made: list[str] = []

    def synthesize_one(line: TranslatedLine) -> ClipRecord:
        n = int(len(line.text) * SECONDS_PER_CHAR * RATE)
        t = np.arange(n) / RATE
        audio = np.concatenate([np.zeros(1200), 0.3 * np.sin(2 * np.pi * 200 * t), np.zeros(1200)])
        path = tmp_path / f"{line.index}-{len(made)}.wav"
        sf.write(path, audio.astype(np.float32), RATE)
        made.append(line.text)
        return ClipRecord(line.index, str(path), RATE, audio.size / RATE, 0, 1, False)

    synthesize_one.made = made  # type: ignore[attr-defined]
    return synthesize_one


def line(index: int, slot_s: float, text: str, **kw: Any) -> TranslatedLine:
    return TranslatedLine(index, 10.0 * index, 10.0 * index + slot_s, 0.0, "source words", text, **kw)


def run(lines, voice, shortener, tmp_path):
    clips = [voice(ln) for ln in lines]
    return shorten_overlong(lines, clips, EN, JA, shortener, voice, TranslationCache(tmp_path), 1.25)


def test_a_line_that_fits_is_left_alone(voice, tmp_path: Path) -> None:
    shortener = StubShortener()
    lines, _, report = run([line(0, 3.0, "x" * 40)], voice, shortener, tmp_path)  # 2.8 s in a 3 s slot
    assert shortener.calls == [] and report.over_cap == 0 and lines[0].shortened == 0


def test_a_line_needing_one_shortening_gets_it(voice, tmp_path: Path) -> None:
    shortener = StubShortener()
    text = "y" * 60  # 4.2 s of speech; the slot allows 2.5 s * 1.25 = 3.125 s
    lines, clips, report = run([line(0, 2.5, text)], voice, shortener, tmp_path)
    assert len(shortener.calls) == 1
    assert shortener.calls[0] == int(60 * 3.125 * 0.95 / 4.2)  # budget from the measured speaking rate
    assert lines[0].shortened == 1 and lines[0].text == text[: shortener.calls[0]]
    assert (report.over_cap, report.shortened, report.fitted, report.still_over) == (1, 1, 1, 0)
    assert sf.info(clips[0].path).duration <= 3.125 + 0.2


def test_a_line_that_never_fits_is_bounded_and_reported(voice, tmp_path: Path) -> None:
    """A stubborn shortener that trims one character per attempt: MAX_ATTEMPTS calls, then reported."""

    class OneLess(StubShortener):
        def shorten(self, source_text, text, source, target, max_chars):  # type: ignore[no-untyped-def]
            self.calls.append(max_chars)
            return text[:-1]

    shortener = OneLess()
    lines, _, report = run([line(0, 1.0, "z" * 80)], voice, shortener, tmp_path)
    assert len(shortener.calls) == MAX_ATTEMPTS
    assert (report.over_cap, report.shortened, report.fitted, report.still_over) == (1, 1, 0, 1)
    assert len(lines[0].text) == 80 - MAX_ATTEMPTS  # the best (shortest) version is kept


def test_no_progress_stops_early(voice, tmp_path: Path) -> None:
    shortener = StubShortener(fixed="w" * 90)  # longer than what it was given
    lines, _, report = run([line(0, 1.0, "z" * 80)], voice, shortener, tmp_path)
    assert len(shortener.calls) == 1 and lines[0].text == "z" * 80 and report.still_over == 1


def test_user_edits_and_source_copies_are_never_rewritten(voice, tmp_path: Path) -> None:
    shortener = StubShortener()
    edited = line(0, 1.0, "e" * 80, edited=True)
    copied = TranslatedLine(1, 10.0, 11.0, 0.0, "same text " * 8, "same text " * 8)
    _, _, report = run([edited, copied], voice, shortener, tmp_path)
    assert shortener.calls == [] and report.over_cap == 2 and report.still_over == 2


def test_shortened_versions_are_cached(voice, tmp_path: Path) -> None:
    shortener = StubShortener()
    run([line(0, 2.5, "y" * 60)], voice, shortener, tmp_path)
    run([line(0, 2.5, "y" * 60)], voice, shortener, tmp_path)
    assert len(shortener.calls) == 1  # the second run paid for nothing


def test_budget_follows_the_speaking_rate_model() -> None:
    assert character_budget(2.0, "en") == int(2.0 * characters_per_second("en"))
    assert character_budget(2.0, "ja") < character_budget(2.0, "en")  # kana/kanji carry more per character
    assert estimate_seconds("a" * 29, "en") == pytest.approx(2.0, rel=0.02)


def test_slot_leaves_a_breath_before_the_next_line() -> None:
    """The dub may borrow the pause after its line minus the breath (150 ms plus a 50 ms margin for the
    plan's own start times); when the source lines nearly touch, nothing is borrowed."""
    from tasks.translate import BREATH_S

    assert BREATH_S == 0.2
    roomy = TranslatedLine(0, 1.0, 3.0, 0.8, "s", "t")
    assert roomy.slot_end == pytest.approx(3.6)
    assert roomy.slot_end + BREATH_S <= roomy.end + roomy.pause_after + 1e-9
    tight = TranslatedLine(0, 1.0, 3.0, 0.1, "s", "t")
    assert tight.slot_end == pytest.approx(3.0)


def test_a_line_predicted_over_the_cap_is_rewritten_before_any_synthesis(tmp_path: Path) -> None:
    """The translation's predicted speed-up decides: the overlong line is rewritten once (cached: a
    re-run asks nothing), the fitting line, the user's own line and a copy of the source are left alone."""
    from tasks.translate import fit_before_synthesis, predicted_speedup

    cps = characters_per_second("en")
    slot = 2.0
    over = "x" * int(slot * 1.6 * cps)  # needs 1.6x
    fits = "y" * int(slot * 1.0 * cps)
    lines = [
        line(0, slot, over),
        line(1, slot, fits),
        line(2, slot, over, edited=True),
        TranslatedLine(3, 30.0, 32.0, 0.0, over, over),
    ]
    assert predicted_speedup(lines[0], "en") > 1.25 >= predicted_speedup(lines[1], "en")
    shortener, cache = StubShortener(), TranslationCache(tmp_path)
    out, stats = fit_before_synthesis(lines, JA, EN, shortener, cache, max_speedup=1.25)
    assert stats == {"predicted_over_cap": 1, "rewritten_to_fit": 1, "rewrite_calls": 1}
    assert out[0].rewritten_to_fit and predicted_speedup(out[0], "en") <= 1.25
    assert shortener.calls == [character_budget(slot * 1.25 * 0.9, "en")]
    assert [ln.text for ln in out[1:]] == [fits, over, over]
    again, stats = fit_before_synthesis(lines, JA, EN, StubShortener(), cache, max_speedup=1.25)
    assert stats["rewrite_calls"] == 0 and again[0].text == out[0].text
