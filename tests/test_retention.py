"""Retention (core/retention.py, python -m flows.retention): a job's intermediate audio and the cached clips
it used are removed, deliverables and other jobs' clips stay; the cache age policy removes old entries only;
both say what they freed."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from core.clip_cache import ClipCache
from flows.retention import main
from tests.speechlike import speechlike


def _clip(cache: ClipCache, key: str, seconds: float) -> Path:
    wav, _ = cache.put(key, speechlike(seconds, 24_000).astype(np.float32), 24_000, {"attempts": 1})
    return wav


def test_a_jobs_intermediate_audio_and_its_cached_clips_are_removed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache_dir, job = tmp_path / "cache", tmp_path / "job"
    cache = ClipCache(cache_dir)
    linked, copied, other = (
        _clip(cache, "aa" + "0" * 62, 1.0),
        _clip(cache, "bb" + "0" * 62, 1.5),
        _clip(cache, "cc" + "0" * 62, 2.0),
    )
    clips = job / "work" / "clips" / "ja"
    clips.mkdir(parents=True)
    os.link(linked, clips / "0000.wav")
    shutil.copyfile(copied, clips / "0001.wav")  # a copy, as across file systems
    for name in ("audio.wav", "vocals.wav", "background.wav", "dub.ja.mka"):
        (job / "work" / name).write_bytes(b"\0" * 1000)
    (job / "work" / "clips.ja.json").write_text("{}")
    deliverables = [job / "video.ja.mkv", job / "report.json", job / "segments.json", job / "video.ja.srt"]
    for path in deliverables:
        path.write_text("kept")

    assert main(["job", str(job), "--cache-dir", str(cache_dir)]) == 0
    out = capsys.readouterr().out
    assert "intermediate audio of" in out and ": 6 file(s)" in out
    assert f"cached clips in {cache_dir}: 4 file(s)" in out  # two entries: audio and metadata each
    assert not any(p.suffix in {".wav", ".mka"} for p in (job / "work").rglob("*"))
    assert (job / "work" / "clips.ja.json").is_file() and all(p.is_file() for p in deliverables)
    assert not linked.exists() and not linked.with_suffix(".json").exists() and not copied.exists()
    assert other.exists() and ClipCache(cache_dir).get("cc" + "0" * 62) is not None


def test_the_cache_age_policy_removes_old_entries_and_reports_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = ClipCache(tmp_path)
    old, new = _clip(cache, "aa" + "1" * 62, 1.0), _clip(cache, "bb" + "1" * 62, 1.0)
    ten_days_ago = time.time() - 10 * 86_400
    for path in (old, old.with_suffix(".json")):
        os.utime(path, (ten_days_ago, ten_days_ago))
    size = old.stat().st_size + old.with_suffix(".json").stat().st_size
    assert main(["cache", "--keep-days", "7", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "older than 7 days" in out and f": 2 file(s), {size / 1e6:.1f} MB freed" in out
    assert not old.exists() and new.exists()
    assert main(["cache", "--keep-days", "-1", "--cache-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "error: --keep-days must not be negative\n"
