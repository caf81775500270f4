"""Assembly stage per language: fit every clip to its slot, place it, mix over the background at the
source loudness, and write the dub track and its subtitles."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf
from prefect import task

from audio.fit import FitResult, fit_clip_to_slot, place_clips
from audio.mix import PCM_CEILING_DBTP, MixResult, integrated_loudness, render_mix
from core.files import (
    atomic_path,
    content_key,
    invalidate,
    is_fresh,
    mark_fresh,
    read_json,
    write_json_atomic,
)
from core.languages import get_language
from core.progress import stage_logger
from tasks.media import STAGE, encode_audio
from tasks.synthesize import ClipRecord
from tasks.translate import TranslatedLine
from text.subtitles import cues_for_track, write_srt, write_vtt

if TYPE_CHECKING:  # pragma: no cover - typing only
    from tasks.line import FittedClip


@dataclass
class LineTiming:
    index: int
    start: float
    slot_end: float
    clip_s: float  # synthesized clip, silence trimmed
    placed_s: float  # after fitting
    speed: float
    truncated_s: float


@dataclass
class TrackResult:
    language: str
    audio_file: str
    srt: str
    vtt: str
    integrated_lufs: float
    true_peak_dbtp: float
    dialogue_gain_db: float
    timings: list[LineTiming]


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return audio, rate


def resample(audio: np.ndarray, src: int, dst: int) -> np.ndarray:
    if src == dst:
        return audio
    import soxr  # what librosa's "soxr_hq" calls, without librosa's lazy-loading first-call cost

    return np.asarray(soxr.resample(audio, src, dst, quality="HQ"), dtype=np.float32)


def assemble_track(
    lines: list[TranslatedLine],
    clips: list[ClipRecord],
    background: np.ndarray | None,
    rate: int,
    channels: int,
    total_samples: int,
    target_lufs: float,
    max_speedup: float,
    duck_db: float = 0.0,
    fitted: list[FittedClip] | None = None,
) -> tuple[MixResult, list[LineTiming]]:
    """`fitted`: the clips already fitted to their slots (per-line tasks, tasks/line.py); without it
    every clip is fitted here."""
    fits, timings = [], []
    for n, (line, clip) in enumerate(zip(lines, clips, strict=True)):
        if fitted is not None:
            done = fitted[n]
            audio, clip_rate = sf.read(done.path, dtype="float32")
            fit = FitResult(
                audio, line.start, audio.size / clip_rate, done.speed, done.truncated_s, done.source_duration
            )
        else:
            audio, clip_rate = sf.read(clip.path, dtype="float32")
            if audio.ndim > 1:
                audio = audio.mean(axis=1)
            fit = fit_clip_to_slot(audio, clip_rate, line.start, line.slot_end, max_speedup)
        fit.audio = resample(fit.audio, clip_rate, rate)
        fits.append(fit)
        timings.append(
            LineTiming(
                index=line.index,
                start=round(line.start, 3),
                slot_end=round(line.slot_end, 3),
                clip_s=round(fit.source_duration, 3),
                placed_s=round(fit.audio.size / rate, 3),
                speed=round(fit.speed, 3),
                truncated_s=round(fit.truncated_s, 3),
            )
        )
    dub = place_clips(fits, rate, total_samples)
    mix = render_mix(
        dub, background, rate, channels, target_lufs, ceiling_dbtp=PCM_CEILING_DBTP, duck_db=duck_db
    )
    return mix, timings


def line_key_fields(line: TranslatedLine) -> dict[str, object]:
    """What of a line the placed track depends on besides its clip (whose key covers speaker and voice):
    the assembly key of a one-voice job stays what it was before lines carried them."""
    return {k: v for k, v in asdict(line).items() if k not in ("speaker", "voice")}


@task(name="assemble", task_run_name="assemble-{lang_code}", **STAGE)
def assemble(
    lang_code: str,
    lines: list[TranslatedLine],
    clips: list[ClipRecord],
    background_wav: Path | None,
    background_key: str,
    rate: int,
    channels: int,
    duration: float,
    target_lufs: float,
    max_speedup: float,
    duck_db: float,
    audio_codec: str,
    audio_out: Path,
    stem_wav: Path | None,
    srt_path: Path,
    vtt_path: Path,
    fitted: list[FittedClip] | None = None,
    speaker_labels: list[str] | None = None,
) -> TrackResult:
    """Place, mix and encode a language's track and write its subtitles; `speaker_labels`: each line's
    speaker label for the subtitles (--subtitle-speakers)."""
    language = get_language(lang_code)
    # everything the track is a function of: a re-run with nothing changed re-uses it (no fit, mix, encode)
    key = content_key(
        "assemble-v1", [line_key_fields(ln) for ln in lines], [c.key or c.path for c in clips],
        background_key,
        rate, channels, duration, round(target_lufs, 3), max_speedup, duck_db, audio_codec,
        *([speaker_labels] if speaker_labels else []),
    )  # fmt: skip
    record = audio_out.with_name(audio_out.name + ".json")
    stem_ok = stem_wav is None or stem_wav.is_file()
    if (
        is_fresh(audio_out, key)
        and record.is_file()
        and srt_path.is_file()
        and vtt_path.is_file()
        and stem_ok
    ):
        cached = read_json(record)
        stage_logger().info("assembled lang=%s cached=true", lang_code)
        return TrackResult(**{**cached, "timings": [LineTiming(**t) for t in cached["timings"]]})
    invalidate(audio_out)
    total = int(round(duration * rate))
    background = None
    if background_wav is not None:
        background, bg_rate = read_audio(background_wav)
        background = resample(background, bg_rate, rate)[:total]
        background = np.pad(background, ((0, total - background.shape[0]), (0, 0)))
    mix, timings = assemble_track(
        lines, clips, background, rate, channels, total, target_lufs, max_speedup, duck_db, fitted
    )
    encode_audio(mix.audio, rate, audio_out, audio_codec, channels=mix.channels)
    if stem_wav is not None:  # --split-outputs: the dub track as a 24-bit WAV stem
        stem = mix.audio if mix.audio.shape[1] == mix.channels else np.repeat(mix.audio, mix.channels, axis=1)
        with atomic_path(stem_wav) as tmp:
            sf.write(str(tmp), stem, rate, subtype="PCM_24")
    cues = cues_for_track(
        [(t.start, t.start + t.placed_s, ln.text) for t, ln in zip(timings, lines, strict=True)],
        duration,
        speaker_labels,
    )
    write_srt(cues, srt_path)
    write_vtt(cues, vtt_path, language.code)
    result = TrackResult(
        language=lang_code,
        audio_file=str(audio_out),
        srt=str(srt_path),
        vtt=str(vtt_path),
        integrated_lufs=round(mix.integrated_lufs, 2),
        true_peak_dbtp=round(mix.true_peak_dbtp, 2),
        dialogue_gain_db=round(mix.gain_db, 2),
        timings=timings,
    )
    write_json_atomic(record, asdict(result))
    mark_fresh(audio_out, key)
    stretched = sum(1 for t in timings if t.speed > 1.0)
    truncated = sum(1 for t in timings if t.truncated_s > 0)
    stage_logger().info(
        "assembled lang=%s lines=%d stretched=%d truncated=%d lufs=%.1f true_peak=%.1f",
        lang_code, len(timings), stretched, truncated, result.integrated_lufs, result.true_peak_dbtp,
    )  # fmt: skip
    return result


@task(name="measure-loudness", **STAGE)
def measure_source_loudness(audio_wav: Path) -> float:
    audio, rate = read_audio(audio_wav)
    lufs = integrated_loudness(audio, rate)
    stage_logger().info("source loudness lufs=%.1f", lufs)
    return lufs
