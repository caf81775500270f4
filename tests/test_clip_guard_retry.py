"""A clip the local TTS length guard flagged is kept for the run that made it (and its report), synthesised
again by the next run through the same cache folder, replaced when the retry passes, and used as it is after
GUARD_TRIES runs (core/clip_cache.py). Each ClipCache instance is one run's view of the folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from core.clip_cache import GUARD, GUARD_TRIES, REVISION, ClipCache
from tests.speechlike import speechlike

KEY = "ab" + "1" * 62
RATE = 24_000


def test_a_flagged_clip_is_kept_for_its_run_retried_next_run_and_replaced_when_the_retry_passes(
    tmp_path: Path,
) -> None:
    flagged_audio = speechlike(3.0, RATE).astype(np.float32)
    run1 = ClipCache(tmp_path)
    wav, meta = run1.put(KEY, flagged_audio, RATE, {GUARD: "too_long", "attempts": 3})
    link = tmp_path / "job1" / "0001.wav"
    link.parent.mkdir()
    link.hardlink_to(wav)  # what the job folder holds (tasks/synthesize.py links cached clips)
    assert meta["guard_tries"] == 1
    assert run1.get(KEY) is not None  # the run that made it uses it (and reports it flagged)

    run2 = ClipCache(tmp_path)
    assert run2.get(KEY) is None  # the next run synthesises it again
    passing_audio = speechlike(1.0, RATE).astype(np.float32)
    run2.put(KEY, passing_audio, RATE, {"attempts": 1})
    hit = ClipCache(tmp_path).get(KEY)
    assert hit is not None and GUARD not in hit[1] and "guard_tries" not in hit[1]
    assert sf.info(str(hit[0])).frames == passing_audio.size  # replaced by the clip that passed
    assert sf.info(str(link)).frames == flagged_audio.size  # the first job's clip is kept for its report


def test_retries_are_bounded(tmp_path: Path) -> None:
    audio = speechlike(2.0, RATE).astype(np.float32)
    for run in range(1, GUARD_TRIES + 1):
        cache = ClipCache(tmp_path)
        assert cache.get(KEY) is None  # a miss while tries are left
        _, meta = cache.put(KEY, audio, RATE, {GUARD: "too_short"})
        assert meta["guard_tries"] == run
    hit = ClipCache(tmp_path).get(KEY)  # tries spent: the flagged clip is used as it is
    assert hit is not None and hit[1][GUARD] == "too_short" and hit[1]["guard_tries"] == GUARD_TRIES


def test_a_flow_run_uses_its_own_flagged_clips_and_a_retry_bumps_the_revision(tmp_path: Path) -> None:
    """Inside a flow the run is the flow run (every task of it, whatever ClipCache instance or thread it
    uses: for_run pins it for worker threads); guard_tries is what the engine gets to pick new seeds."""
    audio = speechlike(2.0, RATE).astype(np.float32)
    run1 = ClipCache(tmp_path, run="run-1")
    assert run1.guard_tries(KEY) == 0
    _, meta = run1.put(KEY, audio, RATE, {GUARD: "too_long", "seed": 0})
    assert meta["guard_run"] == "run-1" and REVISION not in meta
    assert ClipCache(tmp_path, run="run-1").get(KEY) is not None  # another task of the same run
    later = ClipCache(tmp_path, run="run-2")
    assert later.get(KEY) is None and later.guard_tries(KEY) == 1
    _, meta = later.put(KEY, speechlike(1.0, RATE).astype(np.float32), RATE, {"seed": 3})
    assert meta[REVISION] == 1 and GUARD not in meta and later.guard_tries(KEY) == 0
    view = ClipCache(tmp_path).for_run("run-3")
    assert view.run == "run-3" and view.get(KEY) is not None  # passed: a hit for every run
