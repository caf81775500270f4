"""Assembly stage per language: fit every clip to its slot, place it, mix over the background at the
source loudness, and write the dub track and its subtitles."""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf
from prefect import task

from audio.fit import FitResult, fit_clip_to_slot, place_clips
from audio.mix import PCM_CEILING_DBTP, MixResult, render_mix
from audio.stream_mix import BackgroundReader, MixSummary, PlacedClip, PlacedDub, file_loudness, stream_mix
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
from tasks.media import ENCODERS, STAGE, require_tool, run_ffmpeg
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


class StreamEncoder:
    """ffmpeg encoding float32 chunks (frames x channels) fed through its stdin into a Matroska audio
    file, written atomically (tasks.media.encode_audio's settings; a mono feed with 2 output channels
    becomes identical L/R at full level)."""

    def __init__(self, rate: int, in_channels: int, out_channels: int, codec: str, tmp: Path) -> None:
        import subprocess

        upmix = ["-af", "pan=stereo|c0=c0|c1=c0"] if (in_channels, out_channels) == (1, 2) else []
        cmd = [
            require_tool("ffmpeg"), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "f32le", "-ar", str(rate), "-ac", str(in_channels), "-i", "pipe:0",
            *upmix, "-ac", str(out_channels), *ENCODERS[codec], "-f", "matroska", str(tmp),
        ]  # fmt: skip
        self.name = tmp.name
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        self.broken = False

    def write(self, chunk: np.ndarray) -> None:
        assert self.proc.stdin is not None
        if not self.broken:
            try:
                self.proc.stdin.write(np.ascontiguousarray(chunk, dtype="<f4").tobytes())
            except BrokenPipeError:
                self.broken = True  # ffmpeg ended early: its exit status says why, in close()

    def close(self) -> None:
        from core.errors import UpstreamError

        assert self.proc.stdin is not None and self.proc.stderr is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        err = self.proc.stderr.read().decode(errors="replace")
        if self.proc.wait() != 0:
            last = (err.strip().splitlines() or ["no message"])[-1]
            raise UpstreamError(f"ffmpeg failed to encode {self.name}: {last}", code="ffmpeg")

    def abort(self) -> None:
        self.proc.kill()
        self.proc.wait()


class TrackWriter:
    """Where the mixed chunks go: the encoder (opened on the first chunk, whose channel count the mix
    decides after its first pass) and the --split-outputs stem, each inside the caller's ExitStack (an
    error kills ffmpeg and drops the half-written files)."""

    def __init__(
        self,
        stack: contextlib.ExitStack,
        rate: int,
        channels: int,
        codec: str,
        tmp_out: Path,
        stem_wav: Path | None,
    ) -> None:
        self.stack, self.rate, self.channels, self.codec = stack, rate, channels, codec
        self.tmp_out, self.stem_wav = tmp_out, stem_wav
        self.encoder: StreamEncoder | None = None
        self.stem: sf.SoundFile | None = None

    def _open(self, in_channels: int) -> StreamEncoder:
        encoder = StreamEncoder(self.rate, in_channels, self.channels, self.codec, self.tmp_out)
        self.stack.callback(lambda: encoder.abort() if encoder.proc.poll() is None else None)
        if self.stem_wav is not None:
            tmp_stem = self.stack.enter_context(atomic_path(self.stem_wav))
            self.stem = self.stack.enter_context(
                sf.SoundFile(str(tmp_stem), "w", self.rate, self.channels, "PCM_24", format="WAV")
            )
        return encoder

    def write(self, chunk: np.ndarray) -> None:
        if self.encoder is None:
            self.encoder = self._open(chunk.shape[1])
        self.encoder.write(chunk)
        if self.stem is not None:
            self.stem.write(
                chunk if chunk.shape[1] == self.channels else np.repeat(chunk, self.channels, axis=1)
            )

    def finish(self) -> None:
        if self.encoder is None:  # a zero-length track: nothing was fed
            self.encoder = self._open(1)
        self.encoder.close()
        if self.stem is not None:
            self.stem.close()


def fit_to_files(
    lines: list[TranslatedLine], clips: list[ClipRecord], max_speedup: float, out_dir: Path
) -> list[FittedClip]:
    """Fit every clip to its slot into `out_dir` (when no per-line task fitted them): one clip in memory
    at a time."""
    from tasks.line import FittedClip

    fitted = []
    for n, (line, clip) in enumerate(zip(lines, clips, strict=True)):
        audio, clip_rate = sf.read(clip.path, dtype="float32")
        if audio.ndim > 1:
            audio = audio.mean(axis=1)
        fit = fit_clip_to_slot(audio, clip_rate, line.start, line.slot_end, max_speedup)
        path = out_dir / f"fit-{n:05d}.wav"
        sf.write(str(path), fit.audio, clip_rate, subtype="FLOAT")
        fitted.append(FittedClip(str(path), clip_rate, fit.speed, fit.truncated_s, fit.source_duration))
    return fitted


def background_at_rate(background_wav: Path, rate: int, scratch: Path) -> Path:
    """The stem at the track's rate: itself (separation writes stems at the source's rate), or a copy
    resampled by ffmpeg (streamed, never in memory)."""
    if sf.info(str(background_wav)).samplerate == rate:
        return background_wav
    out = scratch / "background.wav"
    run_ffmpeg(
        ["-i", str(background_wav), "-af", "aresample=resampler=soxr", "-ar", str(rate), "-c:a", "pcm_f32le",
         "-rf64", "auto", str(out)],
        "resample the background stem",
    )  # fmt: skip
    return out


def stream_track(
    lines: list[TranslatedLine],
    fitted: list[FittedClip],
    background_wav: Path | None,
    rate: int,
    channels: int,
    total_samples: int,
    target_lufs: float,
    duck_db: float,
    audio_codec: str,
    audio_out: Path,
    stem_wav: Path | None,
    scratch: Path,
) -> tuple[MixSummary, list[LineTiming]]:
    """Place, mix and encode a track chunk by chunk (audio.stream_mix): memory does not grow with the
    video's length. The encoded track (and the stem) are written atomically."""
    dub = PlacedDub(
        [PlacedClip(f.path, ln.start) for f, ln in zip(fitted, lines, strict=True)], rate, total_samples
    )
    timings = [
        LineTiming(
            index=line.index,
            start=round(line.start, 3),
            slot_end=round(line.slot_end, 3),
            clip_s=round(f.source_duration, 3),
            placed_s=round(dub.placed_seconds(n), 3),
            speed=round(f.speed, 3),
            truncated_s=round(f.truncated_s, 3),
        )
        for n, (line, f) in enumerate(zip(lines, fitted, strict=True))
    ]
    background = None
    if background_wav is not None:
        background = BackgroundReader(background_at_rate(background_wav, rate, scratch), total_samples)
    with contextlib.ExitStack() as stack:
        if background is not None:
            stack.callback(background.close)
        tmp_out = stack.enter_context(atomic_path(audio_out))
        writer = TrackWriter(stack, rate, channels, audio_codec, tmp_out, stem_wav)
        mix = stream_mix(
            dub, background, rate, channels, target_lufs, writer.write, ceiling_dbtp=PCM_CEILING_DBTP,
            duck_db=duck_db,
        )  # fmt: skip
        writer.finish()
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
        "assemble-v1", [line_key_fields(ln) for ln in lines], [c.audio_id for c in clips],
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
    import tempfile

    total = int(round(duration * rate))
    with tempfile.TemporaryDirectory(prefix=".assemble-", dir=audio_out.parent) as scratch:
        if fitted is None:
            fitted = fit_to_files(lines, clips, max_speedup, Path(scratch))
        mix, timings = stream_track(
            lines, fitted, background_wav, rate, channels, total, target_lufs, duck_db, audio_codec,
            audio_out, stem_wav, Path(scratch),
        )  # fmt: skip
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
    lufs = file_loudness(audio_wav)  # chunk by chunk: flat memory whatever the length
    stage_logger().info("source loudness lufs=%.1f", lufs)
    return lufs
