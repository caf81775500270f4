"""A stage gives its GPU models back before the next stage loads; on a CPU it keeps them."""

from __future__ import annotations

import functools

from core.gpu import release_gpu_models


def test_models_are_released_after_a_gpu_stage_and_kept_after_a_cpu_one() -> None:
    loads: list[str] = []

    @functools.lru_cache(maxsize=2)
    def load(name: str) -> str:
        loads.append(name)
        return name

    load("whisper")
    assert not release_gpu_models(load.cache_clear, device="cpu")
    load("whisper")
    assert loads == ["whisper"]  # still cached: a served process keeps its CPU models
    assert release_gpu_models(load.cache_clear, device="cuda:0")
    load("whisper")
    assert loads == ["whisper", "whisper"]  # loaded again: the GPU copy was dropped
