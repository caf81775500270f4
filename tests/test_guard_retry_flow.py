"""A clip the local length guard flagged is retried by the next run with seeds no earlier run used, replaced
when the retry passes, and kept as it is after GUARD_TRIES runs: through the real flow (Prefect harness,
real ffmpeg), the tiny random Qwen3-TTS CustomVoice checkpoint through the real loader, real decoder, real
guard and real clip cache.

How the guard is made to fail for one line, and pass on a retry: the tiny random talker never emits EOS
(tests/tiny_qwen_tts.py), so on its own every line runs to the guard's cap and is flagged too_long in every
round of every run: no retry could ever pass. The test gives the talker an end instead: a wrapper around the
REAL talker's generate (its sampled codec frames, decoded by the real speech tokenizer) keeps each line's
frames up to where a model that stops would emit EOS, a function of the line and of the seed in force, as a
real model's output is:
- every line ends at a natural length, midway between the default guard's floor and ceiling (passes);
- LOST ("Every morning, ...") loses its ending (one frame: too_short) under the seeds of a first run
  (0, RETRY_SEED_STEP, 2 * RETRY_SEED_STEP), and ends naturally under any other seed;
- STUCK ("By noon, ...") loses its ending under every seed.
So the retry passes only if the engine really hands it seeds the first run did not use."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from core.clip_cache import GUARD_TRIES
from core.config import build_config
from core.job import JobPaths
from models.qwen_local_tts import FRAME_RATE_HZ, RETRY_SEED_STEP, LengthGuard

pytestmark = pytest.mark.e2e
S = RETRY_SEED_STEP
RETRIES = 2  # the local engine's default in-call retries: 3 rounds per run
FIRST_RUN_SEEDS = {0, S, 2 * S}


def natural_frames(text: str) -> int:
    guard = LengthGuard()  # what the flow's local engine uses
    return round((guard.floor_s(text) + guard.ceiling_s(text)) / 2 * FRAME_RATE_HZ)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float(np.dot(a, b) / math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b))))


def test_a_flagged_clip_is_retried_with_new_seeds_replaced_when_it_passes_and_kept_after_the_last_try(
    prefect_harness: None,
    sample_video: Path,
    sample_truth: dict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import qwen_tts
    import torch
    from qwen_tts.core.models import Qwen3TTSForConditionalGeneration

    from flows.dub import dub
    from tests.tiny_qwen_tts import build_tiny_qwen_tts

    # audible: decoded clips differ with their codec frames (the shared tiny checkpoints decode to silence)
    model = build_tiny_qwen_tts(tmp_path / "tiny-qwen-tts", ["custom_voice"], audible=True)["custom_voice"]

    sentences = sample_truth["sentences"][:3]
    plan_lines = [
        {"index": i, "start": s["start"], "end": s["end"], "text": s["text"], "speaker": "S1"}
        for i, s in enumerate(sentences)
    ]
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"source_language": "en", "lines": plan_lines}))
    kept, lost, stuck = (s["text"] for s in sentences)
    assert not any(ch.isdigit() for ch in kept + lost + stuck)  # spoken exactly as written

    calls: list[dict[str, Any]] = []  # one per generate call: its texts and seed
    original_voice = qwen_tts.Qwen3TTSModel.generate_custom_voice
    original_talker = Qwen3TTSForConditionalGeneration.generate

    def recording(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append({"text": list(kwargs["text"]), "seed": torch.initial_seed()})
        return original_voice(self, *args, **kwargs)

    def talker_with_an_end(self: Any, *args: Any, **kwargs: Any) -> Any:
        codes, hidden = original_talker(self, *args, **kwargs)
        seed, texts = calls[-1]["seed"], calls[-1]["text"]
        ended = []
        for text, frames in zip(texts, codes, strict=True):
            loses_ending = text == stuck or (text == lost and seed in FIRST_RUN_SEEDS)
            length = 1 if loses_ending else natural_frames(text)
            assert frames.shape[0] >= length  # the real frames run to the cap: cut where EOS would be
            ended.append(frames[:length])
        return ended, hidden

    monkeypatch.setattr(qwen_tts.Qwen3TTSModel, "generate_custom_voice", recording)
    monkeypatch.setattr(Qwen3TTSForConditionalGeneration, "generate", talker_with_an_end)
    config = build_config(
        video=sample_video, langs="en", out=tmp_path / "out", cache_dir=tmp_path / "cache",
        separator="none", segments=plan, tts="local", voice="Ryan",
        tts_local_model=str(model), tts_batch=4, translator="local",
        shorten=False, split_outputs=True,
    )  # fmt: skip
    job = JobPaths(config.out_dir, config.name)

    def run() -> dict[str, Any]:
        calls.clear()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny matrices: thread hand-offs cost more than the arithmetic
        try:
            dub(config)
        finally:
            torch.set_num_threads(threads)
        manifest = json.loads(job.clips_manifest("en").read_text())
        clips = {c["index"]: c for c in manifest["clips"]}
        metas = {
            i: json.loads((config.cache_dir / "clips" / c["key"][:2] / f"{c['key']}.json").read_text())
            for i, c in clips.items()
        }
        stem, rate = sf.read(str(job.stem("en")), dtype="float64")
        report = json.loads(job.report.read_text())
        return {
            "calls": [dict(c) for c in calls],
            "clips": clips,
            "metas": metas,
            "stem": stem.mean(axis=1) if stem.ndim > 1 else stem,
            "rate": rate,
            "flagged": report["tracks"]["en"]["synthesis"]["guard_flagged"],
        }

    # Run 1: three rounds; LOST and STUCK lose their endings in all of them and are kept, flagged.
    # The run's finishing pass (tasks/line.py) uses its own flagged clips: no fourth call.
    first = run()
    assert [(c["text"], c["seed"]) for c in first["calls"]] == [
        ([lost, stuck, kept], 0), ([lost, stuck], S), ([lost, stuck], 2 * S)
    ]  # fmt: skip
    assert [first["clips"][i]["guard"] for i in range(3)] == ["", "too_short", "too_short"]
    assert first["flagged"] == 2
    assert first["metas"][1]["guard_tries"] == 1 and first["metas"][1]["seed"] == 0
    assert first["metas"][0]["seed"] == 0 and "guard" not in first["metas"][0]

    # Run 2: only the flagged lines, with seeds run 1 did not use; LOST passes at once and replaces its
    # entry under the same key; STUCK fails again (tries: 2).
    second = run()
    assert [(c["text"], c["seed"]) for c in second["calls"]] == [
        ([lost, stuck], 3 * S), ([stuck], 4 * S), ([stuck], 5 * S)
    ]  # fmt: skip
    assert all(second["clips"][i]["key"] == first["clips"][i]["key"] for i in range(3))
    assert second["clips"][1]["guard"] == "" and "guard" not in second["metas"][1]
    assert second["metas"][1]["seed"] == 3 * S and second["metas"][1]["revision"] == 1
    assert second["clips"][1]["duration"] == natural_frames(lost) / FRAME_RATE_HZ
    assert first["clips"][1]["duration"] == 1 / FRAME_RATE_HZ
    assert second["metas"][2]["guard_tries"] == 2 and second["flagged"] == 1
    assert second["metas"][0] == first["metas"][0]  # the line that passed in run 1 was not touched

    # The delivered dub changed inside LOST's slot and nowhere else (the track's loudness gain may move).
    rate = first["rate"]

    def slot(result: dict[str, Any], index: int) -> np.ndarray:
        line = plan_lines[index]
        stem: np.ndarray = result["stem"]
        return stem[int(line["start"] * rate) : int(line["end"] * rate)]

    assert correlation(slot(first, 1), slot(second, 1)) < 0.5
    assert correlation(slot(first, 0), slot(second, 0)) > 0.99

    # Run 3: the last try for STUCK (seeds 6S-8S); run 4 keeps it flagged and calls nothing.
    third = run()
    assert [(c["text"], c["seed"]) for c in third["calls"]] == [
        ([stuck], 6 * S), ([stuck], 7 * S), ([stuck], 8 * S)
    ]  # fmt: skip
    assert third["metas"][2]["guard_tries"] == GUARD_TRIES == 3
    fourth = run()
    assert fourth["calls"] == [] and fourth["flagged"] == 1
    assert fourth["clips"][2]["guard"] == "too_short" and fourth["metas"] == third["metas"]
    assert np.array_equal(fourth["stem"], third["stem"])  # a re-run with nothing to retry is identical
