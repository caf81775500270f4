"""Probe, audio extraction and the final remux, with ffprobe/ffmpeg.

ffmpeg runs through subprocess with argument lists (never a shell string); its stderr is kept out of
the console and only its last line is quoted in an error.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from core.errors import InputError, MissingToolError, UpstreamError
from core.files import (
    atomic_path,
    content_key,
    current_key,
    invalidate,
    is_fresh,
    mark_fresh,
    sha256_file,
)
from core.languages import Language
from core.progress import stage_logger


@dataclass(frozen=True)
class AudioStream:
    index: int  # absolute stream index in the input
    codec: str
    sample_rate: int
    channels: int
    language: str | None


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    duration: float  # seconds, of the container (what the dub tracks must match)
    video_codec: str
    width: int
    height: int
    audio: tuple[AudioStream, ...]
    subtitle_count: int
    format_name: str


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MissingToolError(f"{name} is not installed; run `make setup` (or install ffmpeg/rubberband)")
    return path


def run_ffmpeg(args: list[str], what: str) -> None:
    cmd = [require_tool("ffmpeg"), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise UpstreamError(f"ffmpeg failed to {what}: {last}", code="ffmpeg")


def probe_media(path: Path) -> MediaInfo:
    """Validate the input: it exists, ffprobe reads it, it has a video stream and an audio stream."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"input video not found: {path}")
    if not path.is_file():
        raise InputError(f"input is not a file: {path}")
    import ffmpeg  # ffmpeg-python: ffprobe's JSON as a dict

    try:
        data: dict[str, Any] = ffmpeg.probe(str(path), cmd=require_tool("ffprobe"), v="error")
    except (ffmpeg.Error, ValueError):
        raise InputError(f"not a readable video file: {path.name}") from None
    streams = data.get("streams", [])
    fmt = data.get("format", {})
    videos = [
        s
        for s in streams
        if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")
    ]
    if not videos:
        raise InputError(f"{path.name} has no video stream (is it an audio or image file?)")
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    if not audios:
        raise InputError(f"{path.name} has no audio stream: there is nothing to dub")
    try:
        duration = float(fmt.get("duration") or videos[0].get("duration") or 0.0)
    except ValueError:
        duration = 0.0
    if duration <= 0:
        raise InputError(f"{path.name}: cannot tell its duration (broken or still being written?)")
    return MediaInfo(
        path=path,
        duration=duration,
        video_codec=videos[0].get("codec_name", "?"),
        width=int(videos[0].get("width", 0)),
        height=int(videos[0].get("height", 0)),
        audio=tuple(
            AudioStream(
                index=int(s["index"]),
                codec=s.get("codec_name", "?"),
                sample_rate=int(s.get("sample_rate", 48000)),
                channels=int(s.get("channels", 2)),
                language=(s.get("tags") or {}).get("language"),
            )
            for s in audios
        ),
        subtitle_count=sum(1 for s in streams if s.get("codec_type") == "subtitle"),
        format_name=fmt.get("format_name", ""),
    )


def working_layout(info: MediaInfo) -> tuple[int, int]:
    """Sample rate and channel count the dub is produced at: those of the first audio stream, with
    surround folded to stereo (a dubbed dialogue track in 5.1 would need a centre-channel mix we do not
    attempt)."""
    first = info.audio[0]
    return first.sample_rate, min(first.channels, 2)


ANALYSIS_RATE = 16_000  # Hz, mono: what Whisper consumes and enough for a speech energy envelope


def extract_audio(info: MediaInfo, out_wav: Path, analysis_wav: Path | None = None) -> Path:
    """The first audio stream as float WAV at its own rate (channels folded to stereo at most), padded
    or cut to the container duration so every later track lines up with the video sample-for-sample.
    With `analysis_wav`, the same decode also writes a 16 kHz mono copy for recognition and onset
    analysis (one decode instead of three)."""
    rate, channels = working_layout(info)
    fit = f"apad=whole_dur={info.duration:.6f},atrim=end={info.duration:.6f}"
    with atomic_path(out_wav) as tmp, contextlib.ExitStack() as stack:
        args = ["-i", str(info.path), "-vn"]
        if analysis_wav is None:
            args += ["-map", f"0:{info.audio[0].index}", "-af", fit]
        else:
            tmp_analysis = stack.enter_context(atomic_path(analysis_wav))
            args += [
                "-filter_complex",
                f"[0:{info.audio[0].index}]{fit},asplit=2[full][analysis];"
                f"[analysis]aresample={ANALYSIS_RATE},pan=mono|c0=0.5*c0+0.5*c1[mono]"
                if channels == 2
                else f"[0:{info.audio[0].index}]{fit},asplit=2[full][analysis];"
                f"[analysis]aresample={ANALYSIS_RATE}[mono]",
                "-map", "[mono]", "-ac", "1", "-c:a", "pcm_s16le", str(tmp_analysis),
                "-map", "[full]",
            ]  # fmt: skip
        args += ["-ac", str(channels), "-ar", str(rate), "-c:a", "pcm_f32le", str(tmp)]
        run_ffmpeg(args, "extract the audio track")
    return out_wav


# AAC with ffmpeg's "fast" coder: 7.4 s of CPU for 10 min of stereo here, against 55 s for the default
# two-loop coder (RTF 0.012 vs 0.09), which alone would break the 0.02 per-language budget; at 192 kb/s
# the quality difference is not audible on dialogue. Opus is faster still and better per bit.
ENCODERS: dict[str, list[str]] = {
    "aac": ["-c:a", "aac", "-aac_coder", "fast", "-b:a", "192k"],
    "opus": ["-c:a", "libopus", "-b:a", "128k", "-application", "audio"],
}


def encode_audio(
    samples: np.ndarray, rate: int, out_file: Path, codec: str, channels: int | None = None
) -> Path:
    """Encode float32 frames x channels straight from memory (no intermediate WAV) into a Matroska
    audio file that the remux copies as is. A mono input with `channels`=2 becomes identical L/R."""
    data = samples if samples.ndim == 2 else samples[:, None]
    out_channels = channels or data.shape[1]
    # ffmpeg's default mono->stereo upmix lowers each side by 3 dB; duplicate at full level instead
    upmix = ["-af", "pan=stereo|c0=c0|c1=c0"] if (data.shape[1], out_channels) == (1, 2) else []
    cmd = [
        require_tool("ffmpeg"), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "f32le", "-ar", str(rate), "-ac", str(data.shape[1]), "-i", "pipe:0",
        *upmix, "-ac", str(out_channels), *ENCODERS[codec],
    ]  # fmt: skip
    with atomic_path(out_file) as tmp:
        proc = subprocess.Popen(
            [*cmd, "-f", "matroska", str(tmp)], stdin=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert proc.stdin is not None and proc.stderr is not None
        try:
            step = rate * 10  # write 10 s at a time: no second full-length copy of the track in memory
            for start in range(0, data.shape[0], step):
                proc.stdin.write(np.ascontiguousarray(data[start : start + step], dtype="<f4").tobytes())
            proc.stdin.close()
        except BrokenPipeError:
            pass
        err = proc.stderr.read().decode(errors="replace")
        if proc.wait() != 0:
            last = (err.strip().splitlines() or ["no message"])[-1]
            raise UpstreamError(f"ffmpeg failed to encode {out_file.name}: {last}", code="ffmpeg")
    return out_file


@dataclass(frozen=True)
class DubTrack:
    language: Language
    audio_file: Path  # encoded by encode_audio; copied into the container as is
    subtitles_srt: Path


def remux(
    info: MediaInfo,
    tracks: list[DubTrack],
    out_file: Path,
    *,
    disclosure: str,
) -> Path:
    """Source video stream(s) copied bit-exact, original audio kept first (not default), one dubbed
    track per language (ISO 639-2 tag, "<Language> (AI dub)" title, the first one default), one soft
    subtitle track per language, and container metadata saying the dub is AI-generated."""
    mp4 = out_file.suffix.lower() in (".mp4", ".m4v", ".mov")
    args: list[str] = ["-i", str(info.path)]
    for t in tracks:
        args += ["-i", str(t.audio_file)]
    for t in tracks:
        args += ["-f", "srt", "-i", str(t.subtitles_srt)]
    args += ["-map", "0:V", "-map", "0:a"]
    if not mp4:
        args += ["-map", "0:s?", "-map", "0:t?"]
    for n in range(len(tracks)):
        args += ["-map", f"{1 + n}:a:0"]
    for n in range(len(tracks)):
        args += ["-map", f"{1 + len(tracks) + n}:s:0"]
    args += ["-map_metadata", "0", "-map_chapters", "0", "-c:v", "copy", "-c:s", "copy", "-c:t", "copy"]
    n_orig = len(info.audio)
    for i in range(n_orig):
        args += [f"-c:a:{i}", "copy", f"-disposition:a:{i}", "0"]
    for n, t in enumerate(tracks):
        i = n_orig + n
        args += [f"-c:a:{i}", "copy"]
        args += [
            f"-metadata:s:a:{i}", f"language={t.language.iso639_2}",
            f"-metadata:s:a:{i}", f"title={t.language.track_title}",
            f"-disposition:a:{i}", "default" if n == 0 else "0",
        ]  # fmt: skip
    n_orig_subs = 0 if mp4 else info.subtitle_count
    for n, t in enumerate(tracks):
        j = n_orig_subs + n
        args += [
            f"-c:s:{j}", "mov_text" if mp4 else "srt",
            f"-metadata:s:s:{j}", f"language={t.language.iso639_2}",
            f"-metadata:s:s:{j}", f"title={t.language.name} (AI dub subtitles)",
        ]  # fmt: skip
    args += [
        "-metadata",
        f"comment={disclosure}",
        "-metadata",
        "AI_GENERATED=dubbed audio tracks are AI-generated",
    ]
    if mp4:
        args += ["-movflags", "+faststart"]
    with atomic_path(out_file) as tmp:
        run_ffmpeg([*args, str(tmp)], f"write {out_file.name}")
    return out_file


# -- Prefect tasks -----------------------------------------------------------------------------------


# Stage outputs are keyed by content (core.files), not by Prefect's cache: Prefect hashes a Path input
# as its string and returns cached Paths whose file is gone (see shared docs, environment.md).
STAGE: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}


@task(name="probe", **STAGE)
def probe(video: Path) -> tuple[MediaInfo, str]:
    """Validate the input and fingerprint its contents (the root of every cache key)."""
    info = probe_media(video)
    digest = sha256_file(info.path)
    stage_logger().info(
        "probed duration_s=%.2f video=%s %dx%d audio_streams=%d sha256=%s",
        info.duration, info.video_codec, info.width, info.height, len(info.audio), digest[:12],
    )  # fmt: skip
    return info, digest


@task(name="extract-audio", **STAGE)
def extract(info: MediaInfo, video_digest: str, out_wav: Path, analysis_wav: Path) -> tuple[Path, Path, str]:
    key = content_key("extract-v2", video_digest, working_layout(info), info.duration)
    if not (is_fresh(out_wav, key) and is_fresh(analysis_wav, key)):
        extract_audio(info, out_wav, analysis_wav)
        mark_fresh(out_wav, key)
        mark_fresh(analysis_wav, key)
    return out_wav, analysis_wav, key


@task(name="remux", **STAGE)
def remux_task(
    info: MediaInfo, video_digest: str, tracks: list[DubTrack], out_file: Path, disclosure: str
) -> Path:
    key = content_key(
        "remux-v1", video_digest, disclosure, out_file.suffix,
        [(t.language.code, current_key(t.audio_file), sha256_file(t.subtitles_srt)) for t in tracks],
    )  # fmt: skip
    if is_fresh(out_file, key):
        stage_logger().info("output unchanged output=%s", out_file.name)
        return out_file
    invalidate(out_file)
    remux(info, tracks, out_file, disclosure=disclosure)
    mark_fresh(out_file, key)
    stage_logger().info("wrote output=%s tracks=%d", out_file.name, len(tracks))
    return out_file
