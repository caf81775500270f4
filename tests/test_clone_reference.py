"""The reference recording of a cloned voice: selection from the job's audio, validation of a user's file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cloning.reference import (
    REFERENCE_RATE,
    clipped_ratio,
    find_reference_window,
    load_reference,
    prepare_reference,
    select_reference,
    validate_reference,
)
from core.errors import InputError
from tasks.segment import Line
from tests.speechlike import speechlike

RATE = 48_000


def test_reference_from_the_sample_is_3_to_15_s_inside_one_spoken_sentence(
    sample_video: Path, sample_truth: dict, tmp_path: Path
) -> None:
    from tasks.media import extract_audio, probe_media

    audio = extract_audio(probe_media(sample_video), tmp_path / "audio.wav")
    sentences = sample_truth["sentences"]
    lines = [Line(s["index"], s["start"], s["end"], s["text"]) for s in sentences]

    wav, transcript = select_reference(audio, lines, out_wav=tmp_path / "ref.wav")

    window = json.loads((tmp_path / "ref.wav.window.json").read_text())
    assert 3.0 <= window["end"] - window["start"] <= 15.0
    chosen = [s for s in sentences if s["index"] in window["line_indices"]]
    assert chosen and transcript == " ".join(s["text"] for s in chosen)
    assert (
        chosen[0]["start"] - 0.3 <= window["start"] <= chosen[0]["start"]
    )  # inside the speech, small margin
    assert chosen[-1]["end"] <= window["end"] <= chosen[-1]["end"] + 0.3
    for other in sentences:  # no other sentence leaks into the window
        if other not in chosen:
            assert other["end"] <= window["start"] or other["start"] >= window["end"]
    assert window["snr_db"] > 10 and window["voiced_ratio"] > 0.7
    assert "text" not in json.dumps(window) and transcript not in json.dumps(window)

    info = sf.info(str(wav))
    assert (info.samplerate, info.channels, info.subtype) == (REFERENCE_RATE, 1, "PCM_16")
    assert info.duration == pytest.approx(window["end"] - window["start"], abs=0.01)
    check = validate_reference(wav)
    assert check.speech_s >= 3.0 and check.peak_dbfs < -0.5


def place(audio: np.ndarray, start_s: float, signal: np.ndarray) -> None:
    a = int(start_s * RATE)
    audio[a : a + signal.size] += signal


@pytest.fixture
def scene() -> tuple[np.ndarray, list[Line]]:
    """Four stretches of speech-like signal over 20 s at 48 kHz:
    line 0 (0.5-4.0 s) in noise (0-5.5 s); lines 1+2 (6.0-8.5, 8.7-11.0: 0.2 s apart) clean, each too short
    alone; line 3 (13.0-17.0) clean but clipped."""
    rng = np.random.default_rng(0)
    audio = np.zeros(20 * RATE, dtype=np.float32)
    audio[: int(5.5 * RATE)] += 0.03 * rng.standard_normal(int(5.5 * RATE)).astype(np.float32)
    place(audio, 0.5, speechlike(3.5, RATE))
    place(audio, 6.0, speechlike(2.5, RATE, f0=170.0))
    place(audio, 8.7, speechlike(2.3, RATE, f0=150.0))
    place(audio, 13.0, np.clip(speechlike(4.0, RATE, level=3.0), -1.0, 1.0))
    audio += 1e-4 * rng.standard_normal(audio.size).astype(np.float32)  # a quiet noise floor
    lines = [
        Line(0, 0.5, 4.0, "A noisy line."),
        Line(1, 6.0, 8.5, "A clean line,"),
        Line(2, 8.7, 11.0, "and its continuation."),
        Line(3, 13.0, 17.0, "A clipped line."),
    ]
    return audio, lines


def test_selection_joins_close_lines_prefers_clean_speech_and_rejects_clipping(
    scene: tuple[np.ndarray, list[Line]], tmp_path: Path
) -> None:
    audio, lines = scene
    window = find_reference_window(audio, RATE, lines)
    assert window.line_indices == (1, 2) and window.transcript == "A clean line, and its continuation."
    assert 5.8 <= window.start <= 6.0 and 11.0 <= window.end <= 11.3

    # 0.4 s apart the two clean lines are separate (each too short): the noisy line is all that is left,
    # with a much lower SNR; the clipped one is never chosen.
    apart = [lines[0], lines[1], Line(2, 8.9, 11.0, "and its continuation."), lines[3]]
    fallback = find_reference_window(audio, RATE, apart)
    assert fallback.line_indices == (0,) and fallback.snr_db < window.snr_db - 10

    with pytest.raises(InputError, match=r"no 3-15 s stretch .*1 clipped.*--clone-ref FILE --clone-ref-text"):
        find_reference_window(audio, RATE, [lines[3]])

    vocals = tmp_path / "vocals.wav"
    sf.write(vocals, np.stack([audio, audio], axis=1), RATE, subtype="FLOAT")
    wav, transcript = select_reference(vocals, lines)
    assert wav == tmp_path / "clone_reference.wav" and transcript == window.transcript
    assert load_reference(wav) == (wav, transcript)  # what the per-language synthesis tasks read back
    assert sf.info(str(wav)).samplerate == REFERENCE_RATE and sf.info(str(wav)).channels == 1


def test_selection_from_a_file_reads_it_in_blocks_and_equals_the_whole_array(
    scene: tuple[np.ndarray, list[Line]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """select_reference scans the vocals a block at a time (a film's vocals are GBs): the energy frames,
    the chosen window and the written reference are those of the whole file read at once, with blocks
    (0.37 s here) that cut frames, lines and the window anywhere."""
    import cloning.reference as reference

    audio, lines = scene
    rng = np.random.default_rng(1)
    stereo = np.stack([audio, audio + 1e-3 * rng.standard_normal(audio.size).astype(np.float32)], axis=1)
    vocals = tmp_path / "vocals.wav"
    sf.write(vocals, stereo, RATE, subtype="FLOAT")
    whole, _ = sf.read(vocals, dtype="float32", always_2d=True)
    mono = whole.mean(axis=1)
    expected = find_reference_window(mono, RATE, lines)
    piece = mono[int(expected.start * RATE) : int(expected.end * RATE)]
    reference.write_reference(piece, RATE, tmp_path / "whole.wav")

    reads: list[int] = []
    real_read = reference._FileTrack.read

    def counting_read(self: reference._FileTrack, lo: int, hi: int) -> np.ndarray:
        reads.append(hi - lo)
        return real_read(self, lo, hi)

    monkeypatch.setattr(reference, "READ_BLOCK_S", 0.37)
    monkeypatch.setattr(reference._FileTrack, "read", counting_read)
    with sf.SoundFile(str(vocals)) as handle:
        power = reference._track_power(reference._FileTrack(handle))
    assert np.array_equal(power, reference.frame_power(mono, RATE))
    assert max(reads) <= int(0.37 * RATE) + 1  # never the whole file

    reads.clear()
    wav, transcript = select_reference(vocals, lines, out_wav=tmp_path / "blocks.wav")
    assert transcript == expected.transcript
    window = json.loads((tmp_path / "blocks.wav.window.json").read_text())
    assert (window["start"], window["end"], window["snr_db"]) == (
        expected.start,
        expected.end,
        expected.snr_db,
    )
    assert sf.read(wav)[0].tolist() == sf.read(tmp_path / "whole.wav")[0].tolist()
    assert max(reads) < audio.size // 2  # blocks and candidate windows (at most 15 s + padding), not 20 s


def write(path: Path, audio: np.ndarray, rate: int = 24_000) -> Path:
    sf.write(path, audio, rate, subtype="FLOAT")
    return path


def test_validate_reference_refuses_with_the_reason(tmp_path: Path) -> None:
    silence = np.zeros(3 * 24_000, dtype=np.float32)
    cases = {
        "too short": (write(tmp_path / "short.wav", np.concatenate([speechlike(2.0, 24_000), silence])),
                      r"too short \(2\.\d s of speech; at least 3 s"),
        "clipped": (write(tmp_path / "clipped.wav", np.clip(speechlike(5.0, 24_000, level=4.0), -1, 1)),
                    r"is clipped \(\d+\.\d+% of samples at full scale\)"),
        "silent": (write(tmp_path / "silent.wav", np.zeros(5 * 24_000, dtype=np.float32)),
                   r"silent or too quiet \(no signal\)"),
        "too quiet": (write(tmp_path / "quiet.wav", speechlike(5.0, 24_000, level=0.003)),
                      r"silent or too quiet \(peak -5\d dBFS\)"),
        "too long": (write(tmp_path / "long.wav", speechlike(61.0, 16_000), 16_000), r"too long \(61\.0 s"),
    }  # fmt: skip
    for name, (path, reason) in cases.items():
        with pytest.raises(InputError, match=reason):
            validate_reference(path)
        assert name  # each case refused for its own reason
    garbage = tmp_path / "garbage.wav"
    garbage.write_text("not audio at all")
    with pytest.raises(InputError, match="garbage.wav is not decodable audio"):
        validate_reference(garbage)
    with pytest.raises(InputError, match="does not exist"):
        validate_reference(tmp_path / "missing.wav")

    good = validate_reference(write(tmp_path / "good.wav", speechlike(5.0, 24_000)))
    assert good.speech_s == pytest.approx(5.0, abs=0.05) and good.clipped_ratio == 0.0


def test_a_loud_sine_is_not_clipping_but_a_flat_top_is() -> None:
    t = np.arange(24_000) / 24_000
    assert clipped_ratio(np.sin(2 * np.pi * 220 * t)) == 0.0
    assert clipped_ratio(np.clip(1.5 * np.sin(2 * np.pi * 220 * t), -1, 1)) > 0.2


def test_a_users_reference_is_converted_to_24_khz_mono(tmp_path: Path) -> None:
    source = tmp_path / "mine.flac"
    stereo = np.stack([speechlike(6.0, 44_100), speechlike(6.0, 44_100)], axis=1)
    sf.write(source, stereo, 44_100)
    wav, check = prepare_reference(source, tmp_path / "ref.wav", "  My own   words. ")
    assert (check.sample_rate, check.channels) == (44_100, 2)
    assert load_reference(wav) == (wav, "My own words.")
    assert load_reference(prepare_reference(source, tmp_path / "ref.wav")[0]) == (wav, None)  # no transcript
    info = sf.info(str(wav))
    assert (info.samplerate, info.channels, info.subtype) == (24_000, 1, "PCM_16")
    assert info.duration == pytest.approx(6.0, abs=0.01)
