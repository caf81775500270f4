"""Transcription on bounded windows (models/whisper_asr.py) with the real tiny.en Whisper: words that
straddle a window edge are kept exactly once, and the windowed transcript reads as the one-pass one."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf

from models.base import TranscriptSegment, Word
from models.whisper_asr import FasterWhisperTranscriber, plan_windows, stitch_windows

RATE = 16_000
WINDOW_S, OVERLAP_S = 20.0, 8.0
SENTENCES = [
    "The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.", "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.", "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.", "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.", "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.", "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.", "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.", "A pot of tea helps to pass the evening.",
]  # fmt: skip


def norm(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch.isalnum())


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 45 s of espeak-ng speech with short pauses (words run across every window edge)."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is missing (make setup installs it)")
    work = tmp_path_factory.mktemp("windows")
    import soxr

    parts = []
    for n, text in enumerate(SENTENCES):
        raw = work / "s.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "165", "-w", str(raw), text], check=True)
        audio, src = sf.read(str(raw), dtype="float32")
        parts += [
            np.asarray(soxr.resample(audio, src, RATE), np.float32),
            np.zeros(int((0.15 + 0.05 * (n % 3)) * RATE), np.float32),
        ]
    path = work / "speech.wav"
    sf.write(str(path), 0.5 * np.concatenate(parts), RATE, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def transcripts(speech: Path, tiny_en_model: Path):
    asr = FasterWhisperTranscriber(str(tiny_en_model))
    whole = asr.transcribe(speech, "en", window_s=1e6)
    windowed = asr.transcribe(speech, "en", window_s=WINDOW_S, overlap_s=OVERLAP_S)
    return whole, windowed


def words_of(transcript) -> list[Word]:
    return [w for s in transcript.segments for w in s.words]


def test_windows_cover_the_file_with_overlap() -> None:
    assert plan_windows(10.0, WINDOW_S, OVERLAP_S) == [(0.0, 10.0)]
    windows = plan_windows(50.0, WINDOW_S, OVERLAP_S)
    assert windows == [(0.0, 28.0), (20.0, 48.0), (40.0, 50.0)]


def test_words_at_window_edges_are_kept_exactly_once(transcripts, speech: Path) -> None:
    whole, windowed = transcripts
    duration = sf.info(str(speech)).duration
    assert duration > 40.0  # two windows at least
    edges = [e for start, end in plan_windows(duration, WINDOW_S, OVERLAP_S) for e in (start, end)][1:-1]
    ref, got = words_of(whole), words_of(windowed)
    straddling = [w for w in ref if any(w.start < e < w.end for e in edges)]
    assert straddling, "no word straddles a window edge: the test would prove nothing"
    for w in straddling:
        near = [g for g in got if norm(g.text) == norm(w.text) and abs(g.start - w.start) < 1.0]
        assert len(near) == 1, (w, near)
    # around every seam (each overlap, where one window hands over to the next) no word is lost or
    # doubled; elsewhere the windows may hear a word differently (other context), not a seam's doing
    zones = [
        (start - 1.0, start + OVERLAP_S + 1.0) for start, _ in plan_windows(duration, WINDOW_S, OVERLAP_S)[1:]
    ]
    out = jiwer.process_words(" ".join(norm(w.text) for w in ref), " ".join(norm(w.text) for w in got))
    for chunk in out.alignments[0]:
        if chunk.type == "insert":
            times = [got[i].start for i in range(chunk.hyp_start_idx, chunk.hyp_end_idx)]
        elif chunk.type == "delete":
            times = [ref[i].start for i in range(chunk.ref_start_idx, chunk.ref_end_idx)]
        else:
            continue
        assert not any(lo <= t < hi for t in times for lo, hi in zones), (chunk, times)
    assert all(a.start <= b.start for a, b in zip(got, got[1:], strict=False))
    assert windowed.duration == pytest.approx(duration) and windowed.language == "en"


def test_stitching_keeps_a_word_both_windows_heard_once() -> None:
    """Two windows hear the word after the cut at slightly different times (the later window puts its
    middle before the cut): it is kept once, from the later window."""

    def seg(words: list[tuple[float, float, str]]) -> TranscriptSegment:
        ws = tuple(Word(a, b, t) for a, b, t in words)
        return TranscriptSegment(ws[0].start, ws[-1].end, "".join(w.text for w in ws).strip(), ws)

    first = [seg([(9.0, 9.4, " one"), (9.5, 9.9, " two"), (12.0, 12.4, " three"), (13.9, 14.3, " four")])]
    second = [
        seg([(9.6, 9.9, " two"), (11.75, 12.1, " three"), (13.9, 14.3, " four"), (15.0, 15.5, " five")])
    ]
    # overlap [10, 14): the longest pause in its middle half is 9.9-12.0 -> cut at 10.95... outside;
    # at 12.4-13.9 -> 13.15 inside [11, 13]: "four" is the anchor
    out = stitch_windows([(0.0, first), (10.0, second)], 4.0)
    texts = [w.text.strip() for s in out for w in s.words]
    assert texts == ["one", "two", "three", "four", "five"]
