"""The reference recording a voice is cloned from: picked from the job's separated vocals, or given by the
user (--clone-ref FILE --clone-ref-text TEXT) and checked.

select_reference chooses 3-15 s of continuous clean speech of one speaker: a candidate is one line of that
speaker, or consecutive lines of that speaker only (another speaker's line in between ends a candidate, and
bounds its padding) separated by less than 0.3 s, whose span is 3-15 s; candidates with clipping are
rejected; the rest are
scored by SNR (speech energy against the quietest 10 % of frames around the candidate), voiced ratio and
length. The winner is written as a 24 kHz mono 16-bit WAV (what qwen-tts and DashScope enrollment want),
with its transcript (the lines' text) returned for in-context cloning.

validate_reference refuses, with the reason, a recording that is not decodable, lasts more than 60 s (the
enrollment limit), is silent or too quiet, is clipped, or holds less than 3 s of speech.
"""

from __future__ import annotations

import logging
import math
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf

from core.errors import InputError, MissingToolError
from core.files import atomic_path, write_bytes_atomic, write_json_atomic

log = logging.getLogger(__name__)

REFERENCE_RATE = 24_000  # Hz: qwen-tts decodes at 24 kHz; DashScope enrollment wants >= 24 kHz mono
MIN_SPEECH_S = 3.0  # enrollment: at least 3 s of clean continuous speech
MAX_REFERENCE_S = 60.0  # enrollment: at most 60 s
MAX_GAP_S = 0.3  # consecutive lines closer than this form one continuous candidate
FRAME_S = 0.02  # energy frames of 20 ms every 10 ms
HOP_S = 0.01
READ_BLOCK_S = 60.0  # the vocals are scanned for energy this much at a time
SILENT_PEAK_DBFS = -45.0  # a recording whose loudest sample is below this is silent for our purposes
QUIET_SPEECH_DBFS = -40.0  # speech frames quieter than this on average: too quiet to clone from
SPEECH_FLOOR_DBFS = -55.0  # frames below this are never speech
SPEECH_BELOW_LOUD_DB = 30.0  # ... nor frames more than this below the loud (95th percentile) frames
HANGOVER_S = 0.3  # pauses shorter than this inside speech count as speech (between words)
CLIP_LEVEL = 0.99  # |sample| at or above this, held flat for CLIP_RUN samples, is a clipped plateau
CLIP_RUN = 3
MAX_CLIPPED_RATIO = 0.001  # more than 0.1 % of samples on clipped plateaus: clipped
SELECT_MAX_CLIPPED_RATIO = 0.0  # a selected window must have no clipped plateau at all
PEAK_CEILING_DBFS = -0.5  # a selected window peaking above this is attenuated to TARGET_PEAK_DBFS
TARGET_PEAK_DBFS = -1.0
CONTEXT_S = 1.0  # SNR: the noise floor is measured over the candidate plus this much either side
NOISE_QUANTILE = 0.10  # ... as the mean power of its quietest 10 % of frames
MIN_VOICED_RATIO = 0.5
PAD_BEFORE_S = 0.10  # room around the lines' times (recognised edges are not exact), within the gaps
PAD_AFTER_S = 0.20
EPS_POWER = 1e-12


class TimedLine(Protocol):
    index: int
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class ReferenceWindow:
    start: float  # seconds in the source audio
    end: float
    line_indices: tuple[int, ...]
    transcript: str
    snr_db: float
    voiced_ratio: float
    speech_s: float
    peak_dbfs: float
    score: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class ReferenceCheck:
    """What validate_reference measured on an acceptable recording."""

    path: Path
    sample_rate: int
    channels: int
    duration_s: float
    speech_s: float
    peak_dbfs: float
    speech_dbfs: float
    clipped_ratio: float


# -- measurements ----------------------------------------------------------------------------------------


def _db(power: np.ndarray | float) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(np.asarray(power, dtype=np.float64), EPS_POWER))


def frame_power(audio: np.ndarray, rate: int) -> np.ndarray:
    """Mean power of 20 ms frames every 10 ms (frame k starts at k * 10 ms): the mean of two consecutive
    10 ms blocks, so a long recording costs one pass and no float64 copy of it."""
    hop = max(1, round(HOP_S * rate))
    blocks = audio.size // hop
    if blocks < 2:
        return np.array([float(np.mean(np.square(audio, dtype=np.float64)))]) if audio.size else np.zeros(0)
    block_power = np.asarray(
        np.mean(np.square(audio[: blocks * hop].reshape(blocks, hop)), axis=1, dtype=np.float64)
    )
    return np.asarray((block_power[:-1] + block_power[1:]) / 2.0)


class _Track(Protocol):
    """Mono float32 samples of a recording by index range (clipped to the recording)."""

    rate: int
    size: int

    def read(self, lo: int, hi: int) -> np.ndarray: ...


class _ArrayTrack:
    def __init__(self, audio: np.ndarray, rate: int) -> None:
        self.audio = _mono(audio)
        self.rate, self.size = int(rate), int(self.audio.size)

    def read(self, lo: int, hi: int) -> np.ndarray:
        return self.audio[max(0, lo) : max(0, hi)]


class _FileTrack:
    """A sound file read by seeking: a two-hour film's vocals (2.5 GB as float32 stereo, 1.3 GB more as
    mono) are never in memory; each block is mixed to mono exactly as the whole file would be."""

    def __init__(self, handle: sf.SoundFile) -> None:
        self.handle, self.rate, self.size = handle, int(handle.samplerate), int(handle.frames)

    def read(self, lo: int, hi: int) -> np.ndarray:
        lo, hi = max(0, lo), min(self.size, hi)
        if hi <= lo:
            return np.zeros(0, dtype=np.float32)
        self.handle.seek(lo)
        return _mono(self.handle.read(hi - lo, dtype="float32", always_2d=True))


def _track_power(track: _Track) -> np.ndarray:
    """frame_power of the whole track, computed from blocks of whole 10 ms hops (the same values)."""
    hop = max(1, round(HOP_S * track.rate))
    blocks = track.size // hop
    if blocks < 2:
        return frame_power(track.read(0, track.size), track.rate)
    step = max(1, round(READ_BLOCK_S / HOP_S)) * hop
    parts = []
    for lo in range(0, blocks * hop, step):
        piece = track.read(lo, min(lo + step, blocks * hop))
        parts.append(np.mean(np.square(piece.reshape(-1, hop)), axis=1, dtype=np.float64))
    block_power = np.concatenate(parts)
    return np.asarray((block_power[:-1] + block_power[1:]) / 2.0)


def clipped_ratio(audio: np.ndarray) -> float:
    """Share of samples on clipped plateaus: runs of >= CLIP_RUN near-equal samples at >= CLIP_LEVEL.
    A loud sine reaches full scale without plateaus; a clipped waveform sits flat on the rail."""
    if audio.size < CLIP_RUN:
        return 0.0
    a = np.abs(audio.astype(np.float64))
    hot = a >= CLIP_LEVEL
    flat = np.zeros_like(hot)
    flat[1:] = np.abs(np.diff(audio.astype(np.float64))) < 1e-4
    # sample i continues a plateau when it is hot, its predecessor is hot and they are equal
    cont = hot & np.concatenate([[False], hot[:-1]]) & flat
    edges = np.diff(np.concatenate([[0], cont.astype(np.int8), [0]]))
    runs = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1) + 1  # a run of r flags: r + 1 samples
    count = int(runs[runs >= CLIP_RUN].sum())
    return count / audio.size


def speech_mask(power_db: np.ndarray, floor_db: float | None = None) -> np.ndarray:
    """Frames that hold speech: above max(SPEECH_FLOOR_DBFS, loud frames - 30 dB, floor_db), with pauses
    shorter than HANGOVER_S between speech frames filled in."""
    if power_db.size == 0:
        return np.zeros(0, dtype=bool)
    threshold = max(SPEECH_FLOOR_DBFS, float(np.percentile(power_db, 95)) - SPEECH_BELOW_LOUD_DB)
    if floor_db is not None:
        threshold = max(threshold, floor_db)
    mask = power_db > threshold
    gap_max = round(HANGOVER_S / HOP_S)
    idx = np.flatnonzero(mask)
    if idx.size > 1:
        for a, b in zip(idx[:-1], idx[1:], strict=True):
            if 1 < b - a <= gap_max:
                mask[a:b] = True
    return mask


def _mono(audio: np.ndarray) -> np.ndarray:
    return audio.mean(axis=1) if audio.ndim == 2 else audio


def _resample(audio: np.ndarray, src: int, dst: int) -> np.ndarray:
    if src == dst:
        return audio.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    g = math.gcd(src, dst)
    return resample_poly(audio.astype(np.float64), dst // g, src // g).astype(np.float32)


def _decode(path: Path) -> tuple[np.ndarray, int, int]:
    """(mono float32 samples, rate, channels of the file); soundfile first, ffmpeg for other formats."""
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
        return _mono(audio), int(rate), int(audio.shape[1])
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        pass
    from tasks.media import require_tool  # ffmpeg decodes what libsndfile cannot (m4a, aac...)

    try:
        ffmpeg = require_tool("ffmpeg")
    except MissingToolError:
        raise InputError(f"reference recording {path.name} is not decodable audio") from None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "decoded.wav"
        proc = subprocess.run(
            [ffmpeg, "-nostdin", "-v", "error", "-y", "-i", str(path), "-vn", "-c:a", "pcm_f32le", str(out)],
            capture_output=True,
        )
        if proc.returncode != 0 or not out.is_file():
            raise InputError(f"reference recording {path.name} is not decodable audio") from None
        audio, rate = sf.read(str(out), dtype="float32", always_2d=True)
    return _mono(audio), int(rate), int(audio.shape[1])


# -- validation ------------------------------------------------------------------------------------------


def validate_reference(path: str | Path) -> ReferenceCheck:
    """Check a reference recording; InputError naming the problem: missing, not decodable, longer than
    60 s, silent or too quiet, clipped, or under 3 s of speech."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"reference recording {str(path)!r} does not exist")
    audio, rate, channels = _decode(path)
    name = path.name
    duration = audio.size / rate if rate else 0.0
    if audio.size == 0 or not np.all(np.isfinite(audio)):
        raise InputError(f"reference recording {name} is not decodable audio (empty or not finite)")
    if duration > MAX_REFERENCE_S:
        raise InputError(
            f"reference recording {name} is too long ({duration:.1f} s; at most {MAX_REFERENCE_S:.0f} s): "
            "cut 10-20 s of one speaker's clean speech"
        )
    peak = float(np.max(np.abs(audio)))
    peak_dbfs = float(_db(peak**2))
    power_db = _db(frame_power(audio, rate))
    mask = speech_mask(power_db)
    speech_dbfs = float(_db(np.mean(10 ** (power_db[mask] / 10)))) if mask.any() else -math.inf
    if peak_dbfs < SILENT_PEAK_DBFS or speech_dbfs < QUIET_SPEECH_DBFS:
        level = f"peak {peak_dbfs:.0f} dBFS" if peak > 0 else "no signal"
        raise InputError(f"reference recording {name} is silent or too quiet ({level})")
    clipped = clipped_ratio(audio)
    if clipped > MAX_CLIPPED_RATIO:
        raise InputError(
            f"reference recording {name} is clipped ({clipped:.2%} of samples at full scale): "
            "use a recording made at a lower level"
        )
    speech_s = float(mask.sum()) * HOP_S
    if speech_s < MIN_SPEECH_S:
        raise InputError(
            f"reference recording {name} is too short ({speech_s:.1f} s of speech; at least "
            f"{MIN_SPEECH_S:.0f} s of clean continuous speech, 10-20 s recommended)"
        )
    return ReferenceCheck(path, rate, channels, duration, speech_s, peak_dbfs, speech_dbfs, clipped)


def write_reference(audio: np.ndarray, rate: int, out_wav: Path) -> Path:
    """Write samples as a 24 kHz mono 16-bit WAV, attenuated when it would peak above -0.5 dBFS."""
    out = _resample(_mono(audio), rate, REFERENCE_RATE)
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    if peak > 10 ** (PEAK_CEILING_DBFS / 20):
        out = out * (10 ** (TARGET_PEAK_DBFS / 20) / peak)
    with atomic_path(out_wav) as tmp:
        sf.write(str(tmp), np.clip(out, -1.0, 1.0), REFERENCE_RATE, subtype="PCM_16", format="WAV")
    return out_wav


def transcript_path(wav: Path) -> Path:
    """Where the reference's transcript is kept beside it (<wav>.txt; work files may hold script text)."""
    return wav.with_name(wav.name + ".txt")


def load_reference(wav: Path) -> tuple[Path, str | None]:
    """(wav, transcript or None) as select_reference / prepare_reference left them: what each per-language
    synthesis task reads to build the cloned voice."""
    wav = Path(wav)
    if not wav.is_file():
        raise InputError(f"voice reference {wav.name} is missing (select or prepare it first)")
    text_file = transcript_path(wav)
    text = text_file.read_text(encoding="utf-8").strip() if text_file.is_file() else ""
    return wav, text or None


def _keep_transcript(wav: Path, text: str | None) -> None:
    cleaned = " ".join((text or "").split())
    if cleaned:
        write_bytes_atomic(transcript_path(wav), (cleaned + "\n").encode("utf-8"))
    else:
        transcript_path(wav).unlink(missing_ok=True)


def prepare_reference(src: str | Path, out_wav: Path, text: str | None = None) -> tuple[Path, ReferenceCheck]:
    """A user's reference (--clone-ref, --clone-ref-text): validated, then written as a 24 kHz mono WAV at
    out_wav, with its transcript (if any) beside it."""
    check = validate_reference(src)
    audio, rate, _ = _decode(check.path)
    write_reference(audio, rate, out_wav)
    _keep_transcript(out_wav, text)
    return out_wav, check


# -- selection -------------------------------------------------------------------------------------------


def speaker_of(line: TimedLine) -> str | None:
    """A line's plan speaker (Line.speaker), None for lines that carry none."""
    speaker = getattr(line, "speaker", None)
    return speaker if isinstance(speaker, str) else None


def _candidates(
    lines: Sequence[TimedLine], min_s: float, max_s: float, max_gap_s: float, speaker: str | None = None
) -> list[tuple[int, list[TimedLine]]]:
    """(position of the first line, lines) of every run of consecutive lines, each less than max_gap_s
    after the previous one, spanning min_s..max_s; with `speaker`, runs of that speaker's lines only."""
    groups: list[tuple[int, list[TimedLine]]] = []
    for i in range(len(lines)):
        if speaker is not None and speaker_of(lines[i]) != speaker:
            continue
        group = [lines[i]]
        for j in range(i, len(lines)):
            if j > i:
                if lines[j].start - lines[j - 1].end >= max_gap_s:
                    break
                if speaker is not None and speaker_of(lines[j]) != speaker:
                    break
                group = [*group, lines[j]]
            span = group[-1].end - group[0].start
            if span > max_s:
                break
            if span >= min_s:
                groups.append((i, group))
    return groups


def find_reference_window(
    audio: np.ndarray,
    rate: int,
    lines: Sequence[TimedLine],
    min_s: float = MIN_SPEECH_S,
    max_s: float = 15.0,
    max_gap_s: float = MAX_GAP_S,
    speaker: str | None = None,
) -> ReferenceWindow:
    """The best candidate window (see the module docstring), of plan speaker `speaker`'s lines only when
    given (the other lines bound the windows); InputError when no candidate qualifies."""
    return _find_window(_ArrayTrack(audio, rate), lines, min_s, max_s, max_gap_s, speaker)


def _find_window(
    track: _Track,
    lines: Sequence[TimedLine],
    min_s: float,
    max_s: float,
    max_gap_s: float,
    speaker: str | None,
) -> ReferenceWindow:
    rate = track.rate
    ordered = sorted((ln for ln in lines if ln.end > ln.start), key=lambda ln: ln.start)
    total_s = track.size / rate
    power = _track_power(track)
    power_db = _db(power)
    n_frames = power.size

    def frames(start: float, end: float) -> slice:
        a = max(0, min(n_frames, int(start / HOP_S)))
        b = max(a, min(n_frames, int(math.ceil((end - FRAME_S) / HOP_S)) + 1))
        return slice(a, b)

    best: ReferenceWindow | None = None
    rejected: dict[str, int] = {"clipped": 0, "not clean": 0}
    for position, group in _candidates(ordered, min_s, max_s, max_gap_s, speaker):
        first, last = group[0], group[-1]
        previous_end = ordered[position - 1].end if position > 0 else 0.0
        following = ordered[position + len(group)] if position + len(group) < len(ordered) else None
        next_start = following.start if following is not None else total_s
        start = max(0.0, first.start - PAD_BEFORE_S, (previous_end + first.start) / 2)
        end = min(total_s, last.end + PAD_AFTER_S, (last.end + next_start) / 2)
        end = min(end, start + max_s)
        a, b = int(start * rate), int(end * rate)
        segment = track.read(a, b)
        if segment.size == 0:
            continue
        if clipped_ratio(segment) > SELECT_MAX_CLIPPED_RATIO:
            rejected["clipped"] += 1
            continue
        context = power[frames(max(0.0, start - CONTEXT_S), min(total_s, end + CONTEXT_S))]
        quiet = np.sort(context)[: max(1, int(len(context) * NOISE_QUANTILE))]
        noise_db = float(_db(np.mean(quiet)))
        inside = frames(start, end)
        window_db = power_db[inside]
        mask = speech_mask(window_db, floor_db=noise_db + 10.0)
        if not mask.any():
            rejected["not clean"] += 1
            continue
        speech_db = float(_db(np.mean(power[inside][mask])))
        snr_db = min(60.0, speech_db - noise_db)
        voiced_ratio = float(mask.mean())
        speech_s = float(mask.sum()) * HOP_S
        peak = float(np.max(np.abs(segment)))
        if voiced_ratio < MIN_VOICED_RATIO or speech_s < min_s or speech_db < QUIET_SPEECH_DBFS:
            rejected["not clean"] += 1
            continue
        score = min(snr_db, 40.0) + 20.0 * voiced_ratio + 0.5 * min(end - start, 12.0)
        window = ReferenceWindow(
            start=round(start, 3),
            end=round(end, 3),
            line_indices=tuple(int(ln.index) for ln in group),
            transcript=" ".join(" ".join(ln.text.split()) for ln in group),
            snr_db=round(snr_db, 2),
            voiced_ratio=round(voiced_ratio, 3),
            speech_s=round(speech_s, 2),
            peak_dbfs=round(float(_db(peak**2)), 2),
            score=round(score, 3),
        )
        if best is None or window.score > best.score:
            best = window
    if best is None:
        why = ", ".join(f"{n} {what}" for what, n in rejected.items() if n)
        whose = f" of speaker {speaker}" if speaker is not None else ""
        raise InputError(
            f"no {min_s:.0f}-{max_s:.0f} s stretch of clean continuous speech{whose} found for the voice "
            "reference"
            + (f" ({why})" if why else "")
            + "; give one with --clone-ref FILE --clone-ref-text TEXT"
        )
    return best


def select_reference(
    vocals_wav: Path,
    lines: Sequence[TimedLine],
    min_s: float = MIN_SPEECH_S,
    max_s: float = 15.0,
    *,
    out_wav: Path | None = None,
    max_gap_s: float = MAX_GAP_S,
    speaker: str | None = None,
) -> tuple[Path, str]:
    """Pick the reference from the job's (separated) vocals and write it; returns (wav, transcript).
    `speaker`: the reference is chosen from that plan speaker's lines only (all of `lines` are passed:
    another speaker's line ends a candidate run and bounds its padding).

    The WAV (default: clone_reference.wav beside the vocals) is 24 kHz mono 16-bit; <wav>.txt keeps the
    transcript (load_reference reads both) and <wav>.window.json where it came from (times, line indices,
    SNR, voiced ratio; no text)."""
    vocals_wav = Path(vocals_wav)
    out = out_wav if out_wav is not None else vocals_wav.with_name("clone_reference.wav")
    try:
        handle = sf.SoundFile(str(vocals_wav))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise InputError(f"cannot read {vocals_wav.name} ({exc.__class__.__name__})") from None
    with handle:
        track = _FileTrack(handle)
        window = _find_window(track, lines, min_s, max_s, max_gap_s, speaker)
        rate = track.rate
        write_reference(track.read(int(window.start * rate), int(window.end * rate)), rate, out)
    _keep_transcript(out, window.transcript)
    meta = {k: v for k, v in asdict(window).items() if k != "transcript"}
    write_json_atomic(
        out.with_name(out.name + ".window.json"), {"source": vocals_wav.name, "speaker": speaker, **meta}
    )
    log.info(
        "voice reference: %.2f-%.2f s (lines %s), SNR %.1f dB, voiced %.0f%%",
        window.start, window.end, ",".join(map(str, window.line_indices)), window.snr_db,
        100 * window.voiced_ratio,
    )  # fmt: skip
    return out, window.transcript
