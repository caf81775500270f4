#!/usr/bin/env python3
"""Generate the bundled sample clip ``sample.mp4`` and its ground truth.

The sample is a ~29 s, 320x180, 15 fps H.264 test-pattern video whose
stereo 48 kHz AAC soundtrack is an English narration (eight sentences
synthesised one by one with ``espeak-ng``) mixed over a quiet music bed
synthesised here with numpy (chord pads, an arpeggio and light
percussion). Next to the video, ``sample.truth.json`` records for every
sentence its text and its start/end time, measured on the placed speech
signal (first/last sample above -40 dBFS), so that later stages of the
pipeline (speech detection, transcription, alignment) can be checked
against known answers.

Usage::

    python media_samples/make_sample.py [--out-dir DIR]

Requirements: ``ffmpeg`` (with libx264 and the native AAC encoder) and
``espeak-ng`` on ``PATH``, plus numpy. Only ``sample.mp4`` and
``sample.truth.json`` are written; intermediate files live in a temporary
directory that is removed afterwards. The output is deterministic apart
from differences between espeak-ng / ffmpeg versions.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# --------------------------------------------------------------------------
# Narration
# --------------------------------------------------------------------------

#: The narration, one entry per sentence (synthesised separately).
SENTENCES: tuple[str, ...] = (
    "Welcome to a small town by the sea.",
    "Every morning, the fishing boats leave before sunrise.",
    "By noon, they come back with fresh fish.",
    "The whole town has only three narrow streets.",
    "Children play on the beach all afternoon.",
    "In the evening, the old lighthouse turns on.",
    "Visitors say it is a very quiet place.",
    "Tomorrow, we will take a boat to the island.",
)

#: Silence between the measured end of sentence i and the measured start
#: of sentence i + 1, in seconds (one entry per gap; deliberately varied,
#: with one short 0.4 s gap and two gaps longer than 1 s).
PAUSES_S: tuple[float, ...] = (0.9, 0.4, 1.1, 0.7, 1.2, 0.6, 1.0)

ESPEAK_VOICE = "en-us"
ESPEAK_RATE_WPM = 150  # espeak-ng speaking rate, words per minute

FIRST_START_S = 1.0  # measured start of the first sentence, seconds
TAIL_S = 1.5  # minimum silence after the last sentence, seconds
MIN_DURATION_S = 28.0  # accepted range for the total duration, seconds
MAX_DURATION_S = 32.0

SPEECH_PEAK_DBFS = -6.0  # every sentence is normalised to this peak level
ACTIVITY_THRESHOLD_DBFS = -40.0  # |sample| above this counts as speech
MUSIC_BELOW_SPEECH_DB = 17.0  # music RMS relative to active-speech RMS, dB
MAX_MIX_PEAK_DBFS = -1.0  # the final mix must stay below this peak level

# --------------------------------------------------------------------------
# Audio / video format
# --------------------------------------------------------------------------

SAMPLE_RATE_HZ = 48_000
CHANNELS = 2
VIDEO_SIZE = "320x180"  # width x height, pixels
VIDEO_FPS = 15  # frames per second
VIDEO_CRF = 30  # x264 constant rate factor (higher = smaller file)
AUDIO_BITRATE = "128k"  # AAC bit rate, bits per second
AUDIO_LANGUAGE = "eng"  # ISO 639-2 tag on the audio stream
TRUTH_LANGUAGE = "en"  # ISO 639-1 code in the ground-truth file
#: The duration is rounded up to a multiple of this many seconds, which is
#: a whole number of video frames (3 at 15 fps) and of audio samples.
DURATION_GRID_S = 0.2

# --------------------------------------------------------------------------
# Music bed
# --------------------------------------------------------------------------

MUSIC_SEED = 20240601  # numpy RNG seed for the percussion noise
TEMPO_BPM = 96.0  # beats per minute
BEATS_PER_BAR = 4
#: One chord per bar, as MIDI note numbers (I - vi - IV - V in C major).
CHORDS_MIDI: tuple[tuple[int, ...], ...] = (
    (48, 55, 60, 64),  # C  major
    (45, 52, 57, 60),  # A  minor
    (41, 53, 57, 60),  # F  major
    (43, 55, 59, 62),  # G  major
)
PAD_ATTACK_S = 0.8  # pad fade-in per chord, seconds
PAD_RELEASE_S = 1.0  # pad fade-out overlapping the next chord, seconds
PAD_DETUNE_CENTS = 4.0  # left channel flat, right channel sharp by this
ARP_DECAY_S = 0.18  # arpeggio note exponential decay time constant, seconds
HAT_DECAY_S = 0.025  # hi-hat noise burst decay time constant, seconds
BRUSH_DECAY_S = 0.06  # brush (snare-like) noise burst decay, seconds
MUSIC_FADE_IN_S = 2.0
MUSIC_FADE_OUT_S = 2.5


@dataclass(frozen=True)
class PlacedSentence:
    """A sentence placed on the timeline, with measured boundaries."""

    index: int
    text: str
    start_s: float
    end_s: float


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def db_to_amplitude(db: float) -> float:
    """Convert a level in dB (relative to full scale) to a linear factor."""
    return float(10.0 ** (db / 20.0))


def amplitude_to_db(amplitude: float) -> float:
    """Convert a linear amplitude to dB (relative to full scale)."""
    return 20.0 * math.log10(max(amplitude, 1e-12))


def rms(signal: FloatArray) -> float:
    """Root-mean-square of all samples of ``signal``."""
    return float(np.sqrt(np.mean(np.square(signal))))


def midi_to_hz(note: float) -> float:
    """Frequency in Hz of a MIDI note number (A4 = 69 = 440 Hz)."""
    return float(440.0 * 2.0 ** ((note - 69.0) / 12.0))


def require_tools(names: Sequence[str]) -> None:
    """Exit with one clear line if any external tool is missing."""
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        sys.exit(
            f"make_sample.py: error: required tool(s) not found on PATH: "
            f"{', '.join(missing)} (install e.g. with apt-get install "
            f"{' '.join(missing)})"
        )


def run(args: Sequence[str]) -> None:
    """Run a command (argument list, no shell); raise with its stderr on failure."""
    result = subprocess.run(list(args), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"command failed ({result.returncode}): {' '.join(args)}\n{result.stderr.strip()}")


# --------------------------------------------------------------------------
# Speech
# --------------------------------------------------------------------------


def synthesise_sentence(text: str, work_dir: Path, index: int) -> FloatArray:
    """Speak ``text`` with espeak-ng and return it as mono 48 kHz float samples."""
    wav_path = work_dir / f"sentence{index}.wav"
    raw_path = work_dir / f"sentence{index}.f32"
    # fmt: off
    run(
        [
            "espeak-ng",
            "-v", ESPEAK_VOICE,
            "-s", str(ESPEAK_RATE_WPM),
            "-w", str(wav_path),
            text,
        ]
    )
    # fmt: on
    # fmt: off
    run(
        [
            "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
            "-i", str(wav_path),
            "-af", f"aresample={SAMPLE_RATE_HZ}:resampler=soxr",
            "-ac", "1",
            "-f", "f32le",
            str(raw_path),
        ]
    )
    # fmt: on
    return np.fromfile(raw_path, dtype="<f4").astype(np.float64)


def active_bounds(signal: FloatArray, threshold: float) -> tuple[int, int]:
    """Return (first, last + 1): the span of samples whose |value| exceeds ``threshold``."""
    above = np.flatnonzero(np.abs(signal) > threshold)
    if above.size == 0:
        raise ValueError("signal never exceeds the activity threshold")
    return int(above[0]), int(above[-1]) + 1


def build_narration(
    clips: Sequence[FloatArray],
) -> tuple[FloatArray, list[PlacedSentence], int]:
    """Place the sentence clips on a timeline.

    Every clip is scaled to :data:`SPEECH_PEAK_DBFS`; the first one starts
    (measured) at :data:`FIRST_START_S`, each next one :data:`PAUSES_S`
    after the measured end of the previous one. Returns the mono speech
    track, the placed sentences (times measured on that track) and the
    total length in samples.
    """
    if len(PAUSES_S) != len(SENTENCES) - 1:
        raise ValueError("PAUSES_S needs exactly one entry per gap between sentences")
    threshold = db_to_amplitude(ACTIVITY_THRESHOLD_DBFS)
    peak = db_to_amplitude(SPEECH_PEAK_DBFS)

    scaled = [clip * (peak / float(np.max(np.abs(clip)))) for clip in clips]
    offsets: list[int] = []  # sample at which each whole clip is placed
    next_start = round(FIRST_START_S * SAMPLE_RATE_HZ)
    for i, clip in enumerate(scaled):
        first, last = active_bounds(clip, threshold)
        offsets.append(next_start - first)
        if i < len(PAUSES_S):
            next_start = next_start + (last - first) + round(PAUSES_S[i] * SAMPLE_RATE_HZ)

    speech_end = max(offset + clip.size for offset, clip in zip(offsets, scaled, strict=True))
    last_active_end = offsets[-1] + active_bounds(scaled[-1], threshold)[1]
    needed_s = max(last_active_end / SAMPLE_RATE_HZ + TAIL_S, speech_end / SAMPLE_RATE_HZ)
    duration_s = math.ceil(needed_s / DURATION_GRID_S - 1e-9) * DURATION_GRID_S
    total = round(duration_s * SAMPLE_RATE_HZ)

    track = np.zeros(total, dtype=np.float64)
    for offset, clip in zip(offsets, scaled, strict=True):
        track[offset : offset + clip.size] += clip

    # Measure the boundaries on the placed track. The silent padding that
    # espeak-ng leaves around a clip may overlap its neighbours, so each
    # sentence is searched for only between the middles of the adjacent pauses.
    nominal = [
        (offset + b[0], offset + b[1])
        for offset, b in zip(offsets, (active_bounds(c, threshold) for c in scaled), strict=True)
    ]
    placed: list[PlacedSentence] = []
    for i, (start, end) in enumerate(nominal):
        lo = 0 if i == 0 else (nominal[i - 1][1] + start) // 2
        hi = total if i == len(nominal) - 1 else (end + nominal[i + 1][0]) // 2
        first, last = active_bounds(track[lo:hi], threshold)
        placed.append(
            PlacedSentence(
                index=i,
                text=SENTENCES[i],
                start_s=(lo + first) / SAMPLE_RATE_HZ,
                end_s=(lo + last) / SAMPLE_RATE_HZ,
            )
        )
    return track, placed, total


# --------------------------------------------------------------------------
# Music bed
# --------------------------------------------------------------------------


def lowpass_kernel(cutoff_hz: float, taps: int = 255) -> FloatArray:
    """Blackman-windowed sinc low-pass FIR kernel with unity DC gain."""
    n = np.arange(taps) - (taps - 1) / 2.0
    kernel: FloatArray = np.sinc(2.0 * cutoff_hz / SAMPLE_RATE_HZ * n) * np.blackman(taps)
    return kernel / float(np.sum(kernel))


def bandpass_kernel(low_hz: float, high_hz: float, taps: int = 255) -> FloatArray:
    """Band-pass FIR kernel (difference of two low-pass kernels)."""
    return lowpass_kernel(high_hz, taps) - lowpass_kernel(low_hz, taps)


def raised_cosine_fade(length: int) -> FloatArray:
    """Return a smooth 0 -> 1 (raised-cosine) ramp of ``length`` samples."""
    if length <= 0:
        return np.ones(0)
    return 0.5 - 0.5 * np.cos(np.pi * np.arange(length) / length)


def add_at(target: FloatArray, start: int, source: FloatArray) -> None:
    """Add ``source`` into ``target`` from sample ``start``, clipping at the end."""
    if start >= target.size:
        return
    stop = min(target.size, start + source.size)
    target[start:stop] += source[: stop - start]


def pad_voice(freq_hz: float, length: int) -> FloatArray:
    """Return a soft pad tone: a sine plus a little triangle-like odd-harmonic content."""
    t = np.arange(length) / SAMPLE_RATE_HZ
    phase = 2.0 * np.pi * freq_hz * t
    tone = np.sin(phase)
    for harmonic in (3, 5, 7):  # triangle series: 1/h^2, alternating sign
        if freq_hz * harmonic < 8_000.0:
            sign = -1.0 if harmonic in (3, 7) else 1.0
            tone += 0.35 * sign * np.sin(harmonic * phase) / harmonic**2
    return tone


def synthesise_music(total: int) -> FloatArray:
    """Render the stereo music bed (shape ``(total, 2)``), peak-normalised to 1."""
    rng = np.random.default_rng(MUSIC_SEED)
    beat = round(60.0 / TEMPO_BPM * SAMPLE_RATE_HZ)  # samples per beat
    bar = beat * BEATS_PER_BAR
    eighth = beat // 2
    music = np.zeros((total, CHANNELS), dtype=np.float64)
    detune = (2.0 ** (-PAD_DETUNE_CENTS / 1200.0), 2.0 ** (PAD_DETUNE_CENTS / 1200.0))

    attack = round(PAD_ATTACK_S * SAMPLE_RATE_HZ)
    release = round(PAD_RELEASE_S * SAMPLE_RATE_HZ)
    bars = math.ceil(total / bar)
    for bar_index in range(bars):
        chord = CHORDS_MIDI[bar_index % len(CHORDS_MIDI)]
        start = bar_index * bar
        length = bar + release
        envelope = np.ones(length)
        envelope[:attack] = raised_cosine_fade(attack)
        envelope[length - release :] = raised_cosine_fade(release)[::-1]

        # Pads: each chord note, slightly detuned differently per channel.
        for note in chord:
            for channel in range(CHANNELS):
                tone = pad_voice(midi_to_hz(note) * detune[channel], length)
                add_at(music[:, channel], start, 0.12 * envelope * tone)
        # Bass: the chord root one octave down.
        bass = np.sin(2.0 * np.pi * midi_to_hz(chord[0] - 12) * np.arange(length) / SAMPLE_RATE_HZ)
        for channel in range(CHANNELS):
            add_at(music[:, channel], start, 0.18 * envelope * bass)

        # Arpeggio: chord tones an octave up on eighth notes, panned alternately.
        pattern = (0, 1, 2, 3, 2, 1, 2, 3)
        note_length = round(6 * ARP_DECAY_S * SAMPLE_RATE_HZ)
        t = np.arange(note_length) / SAMPLE_RATE_HZ
        pluck_env = np.exp(-t / ARP_DECAY_S) * np.minimum(1.0, t / 0.005)
        for step, chord_tone in enumerate(pattern):
            freq = midi_to_hz(chord[chord_tone] + 12)
            pluck = pluck_env * (np.sin(2.0 * np.pi * freq * t) + 0.2 * np.sin(4.0 * np.pi * freq * t))
            left_gain = 0.65 if step % 2 == 0 else 0.35
            onset = start + step * eighth
            add_at(music[:, 0], onset, 0.16 * left_gain * pluck)
            add_at(music[:, 1], onset, 0.16 * (1.0 - left_gain) * pluck)

    # Percussion: short filtered noise bursts.
    hat_kernel = np.zeros(255)
    hat_kernel[127] = 1.0
    hat_kernel -= lowpass_kernel(6_000.0)  # high-pass = delta - low-pass
    brush_kernel = bandpass_kernel(1_200.0, 4_500.0)
    hat_len = round(6 * HAT_DECAY_S * SAMPLE_RATE_HZ)
    brush_len = round(6 * BRUSH_DECAY_S * SAMPLE_RATE_HZ)
    hat_env = np.exp(-np.arange(hat_len) / (HAT_DECAY_S * SAMPLE_RATE_HZ))
    brush_env = np.exp(-np.arange(brush_len) / (BRUSH_DECAY_S * SAMPLE_RATE_HZ))
    for eighth_index in range(math.ceil(total / eighth)):
        onset = eighth_index * eighth
        if eighth_index % 2 == 1:  # off-beat hi-hat, slightly right
            noise = np.convolve(rng.standard_normal(hat_len), hat_kernel, mode="same")
            burst = 0.05 * hat_env * noise
            add_at(music[:, 0], onset, 0.8 * burst)
            add_at(music[:, 1], onset, 1.0 * burst)
        if eighth_index % 4 == 2:  # brush on beats 2 and 4, slightly left
            noise = np.convolve(rng.standard_normal(brush_len), brush_kernel, mode="same")
            burst = 0.12 * brush_env * noise
            add_at(music[:, 0], onset, 1.0 * burst)
            add_at(music[:, 1], onset, 0.8 * burst)

    # Whole-bed fade in / out.
    fade_in = round(MUSIC_FADE_IN_S * SAMPLE_RATE_HZ)
    fade_out = round(MUSIC_FADE_OUT_S * SAMPLE_RATE_HZ)
    music[:fade_in] *= raised_cosine_fade(fade_in)[:, None]
    music[total - fade_out :] *= raised_cosine_fade(fade_out)[::-1, None]
    normalised: FloatArray = music / float(np.max(np.abs(music)))
    return normalised


# --------------------------------------------------------------------------
# Mixing and encoding
# --------------------------------------------------------------------------


def mix(speech: FloatArray, music: FloatArray, sentences: Sequence[PlacedSentence]) -> FloatArray:
    """Mix the mono speech (centred) over the stereo music at the target level.

    The music gain is chosen so that the music RMS, measured over the
    spans where speech is active, is :data:`MUSIC_BELOW_SPEECH_DB` below
    the RMS of the speech over the same spans.
    """
    active = np.zeros(speech.size, dtype=bool)
    for sentence in sentences:
        first = round(sentence.start_s * SAMPLE_RATE_HZ)
        active[first : round(sentence.end_s * SAMPLE_RATE_HZ)] = True
    speech_rms = rms(speech[active])
    music_rms = rms(music[active])
    gain = speech_rms / music_rms * db_to_amplitude(-MUSIC_BELOW_SPEECH_DB)
    mixed = speech[:, None] + gain * music
    peak_dbfs = amplitude_to_db(float(np.max(np.abs(mixed))))
    if peak_dbfs > MAX_MIX_PEAK_DBFS:
        raise RuntimeError(f"mix peak {peak_dbfs:.1f} dBFS exceeds {MAX_MIX_PEAK_DBFS} dBFS")
    print(
        f"levels: speech peak {amplitude_to_db(float(np.max(np.abs(speech)))):.1f} dBFS, "
        f"speech RMS (active) {amplitude_to_db(speech_rms):.1f} dBFS, "
        f"music RMS (same spans) {amplitude_to_db(gain * music_rms):.1f} dBFS, "
        f"mix peak {peak_dbfs:.1f} dBFS"
    )
    return mixed


def encode(mixed: FloatArray, duration_s: float, work_dir: Path, out_path: Path) -> None:
    """Encode the test-pattern video plus ``mixed`` audio into ``out_path``."""
    raw_path = work_dir / "mix.f32"
    np.ascontiguousarray(mixed, dtype="<f4").tofile(raw_path)
    tmp_out = work_dir / "sample.mp4"
    duration = f"{duration_s:.3f}"
    # fmt: off
    run(
        [
            "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi",
            "-i", f"testsrc2=size={VIDEO_SIZE}:rate={VIDEO_FPS}:duration={duration}",
            "-f", "f32le", "-ar", str(SAMPLE_RATE_HZ), "-ac", str(CHANNELS),
            "-i", str(raw_path),
            "-map", "0:v:0", "-map", "1:a:0",
            "-c:v", "libx264", "-preset", "medium", "-crf", str(VIDEO_CRF),
            "-pix_fmt", "yuv420p", "-threads", "1",
            "-c:a", "aac", "-b:a", AUDIO_BITRATE,
            "-ar", str(SAMPLE_RATE_HZ), "-ac", str(CHANNELS),
            "-metadata:s:a:0", f"language={AUDIO_LANGUAGE}",
            "-map_metadata", "-1",
            "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
            "-movflags", "+faststart",
            "-t", duration,
            str(tmp_out),
        ]
    )
    # fmt: on
    shutil.move(str(tmp_out), out_path)


def write_truth(path: Path, duration_s: float, sentences: Sequence[PlacedSentence]) -> None:
    """Write the ground-truth JSON (times in seconds, 3 decimals)."""
    truth = {
        "duration": round(duration_s, 3),
        "sample_rate": SAMPLE_RATE_HZ,
        "language": TRUTH_LANGUAGE,
        "sentences": [
            {
                "index": s.index,
                "text": s.text,
                "start": round(s.start_s, 3),
                "end": round(s.end_s, 3),
            }
            for s in sentences
        ],
    }
    path.write_text(json.dumps(truth, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def generate(out_dir: Path) -> None:
    """Generate ``sample.mp4`` and ``sample.truth.json`` in ``out_dir``."""
    require_tools(["ffmpeg", "espeak-ng"])
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="make_sample_") as tmp:
        work_dir = Path(tmp)
        clips = [synthesise_sentence(text, work_dir, i) for i, text in enumerate(SENTENCES)]
        speech, sentences, total = build_narration(clips)
        duration_s = total / SAMPLE_RATE_HZ
        if not MIN_DURATION_S <= duration_s <= MAX_DURATION_S:
            raise RuntimeError(
                f"duration {duration_s:.2f} s outside {MIN_DURATION_S}-{MAX_DURATION_S} s; "
                "adjust SENTENCES or PAUSES_S"
            )
        music = synthesise_music(total)
        mixed = mix(speech, music, sentences)
        encode(mixed, duration_s, work_dir, out_dir / "sample.mp4")
    write_truth(out_dir / "sample.truth.json", duration_s, sentences)
    print(f"duration {duration_s:.3f} s")
    for s in sentences:
        print(f"  [{s.index}] {s.start_s:7.3f} - {s.end_s:7.3f}  {s.text}")
    print(f"wrote {out_dir / 'sample.mp4'} and {out_dir / 'sample.truth.json'}")


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="Generate media_samples/sample.mp4 and sample.truth.json.")
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="directory for sample.mp4 and sample.truth.json (default: this script's directory)",
    )
    args = parser.parse_args(argv)
    generate(args.out_dir)


if __name__ == "__main__":
    main()
