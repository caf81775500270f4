"""Batch planning for local TTS (models/tts_batching.py): pure code, no model, no GPU."""

from __future__ import annotations

from typing import Any

import pytest

from models.tts_batching import (
    DEFAULT_MAX_BATCH,
    GIB,
    ITEM_COST,
    Batch,
    ItemCost,
    SynthesisItem,
    batch_size_for,
    frames_for_seconds,
    plan_batches,
)

CV, BASE = "Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice", "Qwen/Qwen3-TTS-12Hz-1.7B-Base"


def item(key: str, frames: int, *, language: str = "English", voice: str = "Ryan", model: str = CV,
         mode: str = "custom_voice", cap: int | None = None) -> SynthesisItem:  # fmt: skip
    return SynthesisItem(key, f"text {key}", language, voice, model, mode, frames, cap)


def keys(batches: list[Batch]) -> list[list[str]]:
    return [[i.key for i in b.items] for b in batches]


def test_groups_never_mix_models_or_modes_and_keep_first_appearance_order() -> None:
    items = [
        item("a", 10),
        item("b", 20, model=BASE, mode="base", voice="prompt-1"),
        item("c", 30),
        item("d", 5, mode="voice_design", voice="a calm voice"),
        item("e", 15, model=BASE, mode="base", voice="prompt-2"),
    ]
    batches = plan_batches(items, 8)
    assert [(b.model, b.mode) for b in batches] == [
        (CV, "custom_voice"),
        (BASE, "base"),
        (CV, "voice_design"),
    ]
    assert keys(batches) == [["c", "a"], ["b", "e"], ["d"]]


def test_sorted_longest_first_and_cut_into_batches_of_at_most_max_batch() -> None:
    frames = [12, 40, 7, 40, 25, 3, 18, 30, 9, 50]
    items = [item(str(i), f) for i, f in enumerate(frames)]
    batches = plan_batches(items, 3)
    assert [len(b.items) for b in batches] == [3, 3, 3, 1]
    flat = [i for b in batches for i in b.items]
    assert sorted(i.key for i in flat) == sorted(i.key for i in items)  # every item exactly once
    assert [i.expected_frames for i in flat] == sorted(frames, reverse=True)
    assert keys(batches)[0] == ["9", "1", "3"]  # ties (40, 40) keep the input order
    assert [b.max_frames for b in batches] == [50, 30, 12, 3]


def test_one_batch_mixes_languages_and_voices() -> None:
    items = [
        item("en", 20, language="English", voice="Ryan"),
        item("ja", 21, language="Japanese", voice="Ono_Anna"),
        item("ko", 19, language="Korean", voice="Sohee"),
    ]
    (batch,) = plan_batches(items, 32)
    assert batch.languages == ["Japanese", "English", "Korean"]
    assert batch.voices == ["Ono_Anna", "Ryan", "Sohee"]
    assert batch.texts == ["text ja", "text en", "text ko"]
    assert batch.expected_frames == 60
    assert batch.fill == pytest.approx(60 / (3 * 21))


def test_a_function_of_the_longest_cap_gives_long_lines_smaller_batches() -> None:
    items = [item(f"long{i}", 200) for i in range(5)] + [item(f"short{i}", 20) for i in range(10)]
    seen: list[int] = []

    def allowed(frames: int) -> int:
        seen.append(frames)
        return 2 if frames > 100 else 8

    batches = plan_batches(items, allowed)
    assert [len(b.items) for b in batches] == [2, 2, 2, 8, 1]
    # the last long item shares a batch sized for ITS length; the short ones then get batches of 8
    assert keys(batches)[2] == ["long4", "short0"]
    assert all(f in (20, 200) for f in seen)


def test_the_cap_bounds_memory_when_it_differs_from_the_expected_length() -> None:
    # "b" is expected shorter than "a" but may run much longer: the batch is sized for its cap.
    items = [item("a", 50), item("b", 40, cap=400), item("c", 30)]
    batches = plan_batches(items, lambda frames: 1 if frames >= 400 else 3)
    assert keys(batches) == [["a"], ["b"], ["c"]]
    assert batches[1].max_frames == 400


def test_a_function_below_one_still_makes_single_item_batches() -> None:
    batches = plan_batches([item("a", 10), item("b", 10)], lambda frames: 0)
    assert keys(batches) == [["a"], ["b"]]


def test_empty_input_and_invalid_arguments() -> None:
    assert plan_batches([], 4) == []
    with pytest.raises(ValueError, match="max_batch"):
        plan_batches([item("a", 1)], 0)
    with pytest.raises(ValueError, match="expected_frames"):
        item("a", 0)
    with pytest.raises(ValueError, match="max_frames"):
        item("a", 10, cap=5)


def test_frames_for_seconds() -> None:
    assert frames_for_seconds(0) == 1
    assert frames_for_seconds(1.0) == 13  # 12.5 frames -> 13
    assert frames_for_seconds(0.08) == 1
    assert frames_for_seconds(1.04) == 13  # 13.0 frames, not 14
    assert frames_for_seconds(4.0) == 50
    with pytest.raises(ValueError):
        frames_for_seconds(float("nan"))
    with pytest.raises(ValueError):
        frames_for_seconds(-1)


def test_batch_size_follows_free_memory_and_length() -> None:
    cost = ItemCost(fixed_bytes=10 << 20, bytes_per_frame=1 << 20)  # 10 MiB + 1 MiB per frame
    free = 10 * GIB
    # (10 GiB * 0.85 - 1 GiB) / (10 + 100) MiB = 7680 / 110 -> 69
    assert batch_size_for(free, "1.7B", 100, cost=cost, max_batch=1000) == 69
    assert batch_size_for(free, "1.7B", 100, cost=cost, max_batch=32) == 32
    sizes = [batch_size_for(free, "1.7B", f, cost=cost, max_batch=10_000) for f in (10, 50, 100, 400)]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]
    more = batch_size_for(4 * free, "1.7B", 100, cost=cost, max_batch=10_000)
    assert more > 4 * 69


def test_batch_size_is_at_least_one_and_at_most_the_cap() -> None:
    assert batch_size_for(0, "1.7B", 100) == 1
    assert batch_size_for(512 << 20, "0.6B", 2000) == 1  # less than the reserve free
    assert batch_size_for(1 << 50, "1.7B", 10) == DEFAULT_MAX_BATCH
    assert batch_size_for(1 << 50, "1.7B", 10, max_batch=7) == 7


def test_the_measured_costs_cover_both_sizes() -> None:
    """ITEM_COST holds the H200 measurement: 141.4 MiB per item at 60 frames, 283 MiB at 120, both sizes."""
    assert set(ITEM_COST) == {"1.7B", "0.6B"}
    for cost in ITEM_COST.values():
        assert 140 << 20 < cost.bytes_for(60) < 143 << 20
        assert 281 << 20 < cost.bytes_for(120) < 285 << 20
    # 100 GiB free, 5 s lines (63 frames): (100 * 0.85 - 1) GiB / 148.5 MiB -> 579 items, capped at 128
    assert batch_size_for(100 * GIB, "1.7B", 63) == DEFAULT_MAX_BATCH == 128
    assert batch_size_for(100 * GIB, "1.7B", 63, max_batch=10_000) == 579
    # a 24 GB card with the 1.7B model loaded (about 19 GiB free), 10 s lines (125 frames, 294 MiB): 52
    assert batch_size_for(19 * GIB, "1.7B", 125) == 52


def test_batch_size_rejects_unknown_sizes_and_bad_settings() -> None:
    with pytest.raises(ValueError, match="unknown Qwen3-TTS size"):
        batch_size_for(GIB, "7B", 10)
    with pytest.raises(ValueError, match="max_batch"):
        batch_size_for(GIB, "1.7B", 10, max_batch=0)
    with pytest.raises(ValueError, match="headroom"):
        batch_size_for(GIB, "1.7B", 10, headroom=1.5)
    with pytest.raises(ValueError):
        ItemCost(fixed_bytes=0, bytes_per_frame=0)
    assert ItemCost(0, 100).bytes_for(0) == 100  # a clip is at least one frame


# -- SharedDevice: languages synthesising at the same time share generate calls ----------------------------


def _device_run(calls: list[list[str]], started: Any, gate: Any) -> Any:
    def run(requests: list[str]) -> list[str]:
        calls.append(list(requests))
        started.set()
        gate.wait(5)
        return [f"clip:{r}" for r in requests]

    return run


def test_batches_waiting_for_the_device_join_one_call() -> None:
    import threading

    from models.tts_batching import SharedDevice

    device = SharedDevice()
    calls: list[list[str]] = []
    started, gate = threading.Event(), threading.Event()
    run = _device_run(calls, started, gate)
    results: dict[str, list[str]] = {}

    def language(code: str, n: int, key: str = "voice-a", limit: int = 128) -> None:
        results[code] = device.run(key, [f"{code}{i}" for i in range(n)], limit, run)

    first = threading.Thread(target=language, args=("ja", 2))
    first.start()
    assert started.wait(5)  # ja holds the device; en, ko and a German batch of another voice now queue
    others = [
        threading.Thread(target=language, args=("en", 3)),
        threading.Thread(target=language, args=("ko", 4)),
        threading.Thread(target=language, args=("de", 1, "voice-b")),
    ]
    for t in others:
        t.start()
    while len(device._waiting) < 3:  # all three queued
        threading.Event().wait(0.01)
    gate.set()
    for t in [first, *others]:
        t.join(5)
    assert calls[0] == ["ja0", "ja1"]
    assert sorted(calls[1]) == ["en0", "en1", "en2", "ko0", "ko1", "ko2", "ko3"]  # one call for both
    assert calls[2] == ["de0"]  # another voice: a call of its own
    assert results["ko"] == ["clip:ko0", "clip:ko1", "clip:ko2", "clip:ko3"] and device.calls == 3


def test_a_joined_call_stays_within_the_smallest_limit_and_errors_reach_every_caller() -> None:
    import threading

    import pytest

    from models.tts_batching import SharedDevice

    device = SharedDevice()
    calls: list[list[str]] = []
    started, gate = threading.Event(), threading.Event()
    run = _device_run(calls, started, gate)
    out: dict[str, object] = {}

    def language(code: str, n: int, limit: int) -> None:
        out[code] = device.run("v", [f"{code}{i}" for i in range(n)], limit, run)

    holder = threading.Thread(target=language, args=("ja", 1, 8))
    holder.start()
    assert started.wait(5)
    waiting = [threading.Thread(target=language, args=(c, 3, 4)) for c in ("en", "ko")]
    for t in waiting:
        t.start()
    while len(device._waiting) < 2:
        threading.Event().wait(0.01)
    gate.set()
    for t in [holder, *waiting]:
        t.join(5)
    assert [len(c) for c in calls] == [1, 3, 3]  # 3 + 3 > 4: not joined

    def failing(requests: list[str]) -> list[str]:
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        device.run("v", ["x"], 8, failing)
    assert device.run("v", ["y"], 8, lambda rs: [r.upper() for r in rs]) == ["Y"]  # the device is free again
