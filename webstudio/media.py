"""What the studio's page plays and draws, made from the job's files on demand and kept in
work/studio/ (keyed by the files they come from, so a re-dub makes them again):

- one video per audio track (the original, each language): the dubbed video's picture stream and that
  track, stream-copied into an MP4 (browsers do not switch the audio tracks of one file);
- captions: each language's WebVTT sidecar as the job wrote it, and the source lines as WebVTT;
- the source waveform: peak levels at WAVEFORM_RATE per second, one byte each.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from core.files import atomic_path, content_key, is_fresh, mark_fresh
from core.job import JobPaths
from webstudio.job import StudioError, StudioJob

WAVEFORM_RATE = 50  # peaks per second: 20 ms, finer than any zoom of the timeline shows
ORIGINAL = "original"


def _stat_key(*paths: Path) -> str:
    return content_key([(str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths])


def track_number(job: StudioJob, track: str) -> int:
    """The audio stream of the dubbed video that holds `track` (the original first, then the languages in
    the job's order: tasks/media.remux)."""
    if track == ORIGINAL:
        return 0
    langs = job.languages()
    if track not in langs:
        raise StudioError(f"no track {track!r} (tracks: {', '.join([ORIGINAL, *langs])})", 404)
    return 1 + langs.index(track)


def preview_video(job: StudioJob, track: str) -> Path:
    """work/studio/<track>.mp4: the dubbed video's picture and one of its audio tracks (stream copy)."""
    paths = job.paths()
    number = track_number(job, track)
    final = paths.final
    if not final.is_file():
        raise StudioError("this job has no dubbed video yet: re-dub it first", 404)
    out = paths.work / "studio" / f"{track}.mp4"
    key = content_key("studio-preview-v1", _stat_key(final), number)
    if is_fresh(out, key):
        return out
    with atomic_path(out) as tmp:
        cmd = [
            "ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(final),
            "-map", "0:v:0", "-map", f"0:a:{number}",
            "-c", "copy", "-movflags", "+faststart", "-f", "mp4", str(tmp),
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, check=False)
        if done.returncode != 0:
            raise StudioError(f"could not prepare the {track} video (ffmpeg exit {done.returncode})", 500)
    mark_fresh(out, key)
    return out


def captions(job: StudioJob, track: str) -> Path:
    """The WebVTT captions of a track: the job's sidecar for a language, the source lines for the original."""
    paths: JobPaths = job.paths()
    if track != ORIGINAL:
        track_number(job, track)
        vtt = paths.vtt(track)
        if not vtt.is_file():
            raise StudioError(f"{vtt.name} does not exist yet: re-dub the job first", 404)
        return vtt
    from text.subtitles import cues_for_track, write_vtt

    source_lang, lines = job.plan()
    plan = job.root / "segments.json"
    out = paths.work / "studio" / "original.vtt"
    key = content_key("studio-source-vtt-v1", _stat_key(plan))
    if not is_fresh(out, key):
        duration = max(ln.slot_end for ln in lines)
        cues = cues_for_track([(ln.start, ln.end, ln.text) for ln in lines], duration)
        write_vtt(cues, out, source_lang or "und")
        mark_fresh(out, key)
    return out


def waveform(job: StudioJob) -> dict[str, Any]:
    """The source's peak level per 1/WAVEFORM_RATE s, 0-255 (square root of the peak: quiet speech stays
    visible), base64 encoded; {} when the job kept no extracted audio."""
    import soundfile as sf

    paths = job.paths()
    source = next((p for p in (paths.analysis, paths.audio) if p.is_file()), None)
    if source is None:
        return {"rate": WAVEFORM_RATE, "peaks": ""}
    out = paths.work / "studio" / "waveform.u8"
    key = content_key("studio-waveform-v1", _stat_key(source), WAVEFORM_RATE)
    if not is_fresh(out, key):
        info = sf.info(str(source))
        hop = max(1, info.samplerate // WAVEFORM_RATE)
        peaks: list[np.ndarray] = []
        for block in sf.blocks(
            str(source), blocksize=hop * WAVEFORM_RATE * 60, dtype="float32", always_2d=True
        ):
            mono = np.abs(block).max(axis=1)
            n = len(mono) // hop * hop
            if n:
                peaks.append(mono[:n].reshape(-1, hop).max(axis=1))
            if len(mono) > n:
                peaks.append(np.array([mono[n:].max()], dtype=np.float32))
        level = np.concatenate(peaks) if peaks else np.zeros(0, dtype=np.float32)
        data = np.clip(np.sqrt(np.clip(level, 0.0, 1.0)) * 255.0, 0, 255).astype(np.uint8)
        with atomic_path(out) as tmp:
            tmp.write_bytes(data.tobytes())
        mark_fresh(out, key)
    return {"rate": WAVEFORM_RATE, "peaks": base64.b64encode(out.read_bytes()).decode("ascii")}
