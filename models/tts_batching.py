"""Batch planning for local Qwen3-TTS synthesis on a GPU (pure: no torch, no qwen_tts).

One `generate_*` call of qwen-tts synthesises a list of texts together, each with its own language and
speaker (voice prompt, description). The call is autoregressive over codec frames (12.5 per second) and
runs until its LONGEST item is done: the others wait, padded. So a good batch holds items of similar
length, and may mix languages and voices freely, but never models or modes (a CustomVoice and a Base
checkpoint are different models; voice design and voice cloning are different generate calls).

- `plan_batches(items, max_batch)` groups requests by (model, mode), sorts each group by expected length
  (longest first) and cuts it into consecutive batches of at most `max_batch` items. `max_batch` may be a
  function of the batch's longest item (frames -> items), so long lines get smaller batches than short
  ones: pass `lambda frames: batch_size_for(free, size, frames)`.
- `batch_size_for(free_bytes, model_size, max_frames)` is how many items fit in `free_bytes` of GPU memory
  for a batch whose longest item is `max_frames` codec frames, from the per-item cost measured on an
  NVIDIA H200 (ITEM_COST below), capped at DEFAULT_MAX_BATCH (128: the largest batch measured, where
  throughput was still growing).

Measured with bench/gpu.py (qwen-tts 0.1.1, transformers 4.57.3, torch 2.11 + CUDA 13, bf16, sdpa, random
weights at the published 1.7B / 0.6B CustomVoice sizes, one NVIDIA H200): the figures are next to ITEM_COST
and DEFAULT_MAX_BATCH, the whole table in bench/README.md ("bench.gpu").
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

FRAME_RATE_HZ = 12.5  # Qwen3-TTS 12 Hz codec: one talker step = one frame = 80 ms of audio
GIB = 1 << 30
MODEL_SIZES = ("1.7B", "0.6B")


@dataclass(frozen=True)
class ItemCost:
    """Peak GPU memory one batch item adds on top of the loaded model, for a batch whose longest item is
    `frames` codec frames: fixed_bytes + bytes_per_frame * frames. Per frame: the speech tokenizer's decoder
    activations at 24 kHz (the peak, measured), plus the talker's KV cache and the hidden states generate()
    keeps for every step. qwen-tts decodes in chunks of at most 300 frames, so past 300 frames the linear
    model overestimates: safe."""

    fixed_bytes: int
    bytes_per_frame: int

    def __post_init__(self) -> None:
        if self.fixed_bytes < 0 or self.bytes_per_frame <= 0:
            raise ValueError("an item's memory cost must be positive")

    def bytes_for(self, frames: int) -> int:
        return self.fixed_bytes + self.bytes_per_frame * max(1, frames)


# Peak torch.cuda.max_memory_allocated() above the loaded model, per item, measured with bench/gpu.py on one
# NVIDIA H200 (bf16, sdpa, qwen-tts 0.1.1, transformers 4.57.3, torch 2.11 + CUDA 13), from the slope between
# batches of 8 and 32 items at 60 and at 120 frames:
#   1.7B CustomVoice: 141.4 MiB per item at 60 frames (4.8 s; the same for batches of 1, 8, 32, 64 and 128),
#                     283.1 / 282.7 MiB at 120 frames -> 0.18 MiB + 2.354 MiB per frame;
#   0.6B CustomVoice: 141.3 MiB at 60 frames, 282.8 / 282.5 MiB at 120 -> 0.24 MiB + 2.351 MiB per frame.
# The two sizes cost the same because the peak comes from the speech tokenizer's decoder (the same 12 Hz
# decoder for both), not from the talker's KV cache. E.g. 128 items x 60 frames = 17.7 GiB above the weights
# (3.9 GiB for 1.7B, 2.0 GiB for 0.6B).
ITEM_COST: dict[str, ItemCost] = {
    "1.7B": ItemCost(fixed_bytes=187_328, bytes_per_frame=2_467_986),
    "0.6B": ItemCost(fixed_bytes=252_181, bytes_per_frame=2_465_471),
}
# The largest batch measured. One generate step (a frame for every item) took 225-295 ms on the H200 from 1
# to 128 items (1.7B; 188-234 ms for 0.6B): Python and kernel-launch bound, so throughput still grew about
# linearly there (1.7B, 60 frames: batch 1 0.35x real time, 8 2.4x, 32 8.6x, 64 19.0x, 128 40.5x). Larger
# batches are untested; memory (batch_size_for) is what should limit them.
DEFAULT_MAX_BATCH = 128
DEFAULT_HEADROOM = 0.85  # of the free memory: allocator fragmentation, cuBLAS/cuDNN workspaces
DEFAULT_RESERVE_BYTES = 1 * GIB  # kept free whatever the batch: other stages, the CUDA context growing


def frames_for_seconds(seconds: float) -> int:
    """Codec frames for a clip of `seconds` (at least 1)."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a clip length must be a finite, non-negative number of seconds, not {seconds!r}")
    return max(1, math.ceil(seconds * FRAME_RATE_HZ - 1e-9))


@dataclass(frozen=True)
class SynthesisItem:
    """One clip to synthesise. `model` and `mode` must match within a generate call; `language` and
    `voice` (speaker name, voice-prompt id or voice description) may differ per item.
    `expected_frames` (codec frames, 12.5 per second) orders the items; `max_frames`, the cap the caller
    will pass as max_new_tokens for it, bounds the memory (defaults to expected_frames)."""

    key: str
    text: str
    language: str
    voice: str
    model: str
    mode: str
    expected_frames: int
    max_frames: int | None = None

    def __post_init__(self) -> None:
        if self.expected_frames < 1:
            raise ValueError(f"item {self.key!r}: expected_frames must be at least 1")
        if self.max_frames is not None and self.max_frames < self.expected_frames:
            raise ValueError(f"item {self.key!r}: max_frames is below expected_frames")

    @property
    def frame_cap(self) -> int:
        return self.max_frames if self.max_frames is not None else self.expected_frames


@dataclass(frozen=True)
class Batch:
    """Items for ONE generate call: same model and mode, longest first."""

    model: str
    mode: str
    items: tuple[SynthesisItem, ...]

    @property
    def max_frames(self) -> int:
        """The cap for the call (its max_new_tokens, in frames): the largest item cap."""
        return max(item.frame_cap for item in self.items)

    @property
    def expected_frames(self) -> int:
        """Frames the batch is expected to produce in all (the wanted audio)."""
        return sum(item.expected_frames for item in self.items)

    @property
    def fill(self) -> float:
        """Wanted frames / frames the call steps through (len * longest expected): 1.0 when every item
        has the same length. A model that never stops early makes every item run to the longest."""
        longest = max(item.expected_frames for item in self.items)
        return self.expected_frames / (len(self.items) * longest)

    @property
    def texts(self) -> list[str]:
        return [item.text for item in self.items]

    @property
    def languages(self) -> list[str]:
        return [item.language for item in self.items]

    @property
    def voices(self) -> list[str]:
        return [item.voice for item in self.items]


MaxBatch = int | Callable[[int], int]


def plan_batches(items: Iterable[SynthesisItem], max_batch: MaxBatch) -> list[Batch]:
    """Group by (model, mode) in order of first appearance, sort each group by expected length, longest
    first (ties: larger cap first, then input order), and cut it into consecutive batches.

    `max_batch` is an int, or a function of a batch's largest cap (max frames) giving the number of items
    allowed: a batch grows while it stays within the limit for its largest cap so far. A function result
    below 1 still makes a batch of one (the item has to be synthesised; if it does not fit, the call fails
    and says so). Longest first: a batch that does not fit in memory fails at once rather than at the end
    of the job, and the last batch is the shortest."""
    if isinstance(max_batch, int) and max_batch < 1:
        raise ValueError(f"max_batch must be at least 1, not {max_batch}")

    def limit(frames: int) -> int:
        return max_batch if isinstance(max_batch, int) else max(1, int(max_batch(frames)))

    groups: dict[tuple[str, str], list[tuple[int, SynthesisItem]]] = {}
    for index, item in enumerate(items):
        groups.setdefault((item.model, item.mode), []).append((index, item))
    batches: list[Batch] = []
    for (model, mode), members in groups.items():
        members.sort(key=lambda pair: (-pair[1].expected_frames, -pair[1].frame_cap, pair[0]))
        current: list[SynthesisItem] = []
        cap = 0
        for _, item in members:
            grown = max(cap, item.frame_cap)
            if current and len(current) + 1 > limit(grown):
                batches.append(Batch(model, mode, tuple(current)))
                current, grown = [], item.frame_cap
            current.append(item)
            cap = grown
        batches.append(Batch(model, mode, tuple(current)))
    return batches


def batch_size_for(
    free_bytes: int,
    model_size: str,
    max_frames: int,
    *,
    cost: ItemCost | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    headroom: float = DEFAULT_HEADROOM,
    reserve_bytes: int = DEFAULT_RESERVE_BYTES,
) -> int:
    """Items per generate call for a batch whose longest item is `max_frames` codec frames, given
    `free_bytes` of GPU memory free with the model already loaded (torch.cuda.mem_get_info()[0]).

    At least 1 (a single item always gets its chance), at most `max_batch`. `cost` overrides the
    measured per-item cost of `model_size` ("1.7B" or "0.6B")."""
    if cost is None:
        if model_size not in ITEM_COST:
            raise ValueError(f"unknown Qwen3-TTS size {model_size!r}; measured: {', '.join(ITEM_COST)}")
        cost = ITEM_COST[model_size]
    if max_batch < 1:
        raise ValueError(f"max_batch must be at least 1, not {max_batch}")
    if not 0 < headroom <= 1:
        raise ValueError(f"headroom must be in (0, 1], not {headroom}")
    usable = free_bytes * headroom - reserve_bytes
    if usable <= 0:
        return 1
    return max(1, min(max_batch, int(usable // cost.bytes_for(max_frames))))


# -- one device, several languages ------------------------------------------------------------------------


class _Ticket:
    """One caller's batch waiting for the device."""

    def __init__(
        self, key: str, requests: list[Any], limit: int, run: Callable[[list[Any]], list[Any]]
    ) -> None:
        self.key, self.requests, self.limit, self.run = key, requests, limit, run
        self.results: list[Any] | None = None
        self.error: BaseException | None = None


class SharedDevice:
    """Where the device engine's batches of every language running in this process meet.

    Each language's pipeline synthesises on its own (a slow translation holds no other language), but the
    GPU is one: a batch that arrives while the device is busy waits, and when the device frees, the caller
    that finds it free runs every waiting batch that can share one generate call with the first in line
    (same `key`: the same model, mode and voice; languages may differ, the package takes one language per
    item) together, as long as the joined batch stays within the smallest `limit` among them (what the
    GPU's free memory holds). bench/gpu.py measured why it pays: a generate step costs the same for 1 or 128
    items (0.3x real time for one 1.7B line per call, 40x for 128), so two languages' 40-line batches run
    in about the time of one."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: list[_Ticket] = []
        self._busy = False
        self.calls = 0  # generate calls made (tests and benchmarks read it)

    def run(
        self, key: str, requests: list[Any], limit: int, run: Callable[[list[Any]], list[Any]]
    ) -> list[Any]:
        """`run(requests)` -> one result per request, possibly together with other callers' requests."""
        ticket = _Ticket(key, list(requests), max(1, limit), run)
        with self._cond:
            self._waiting.append(ticket)
        while True:
            with self._cond:
                while ticket.results is None and ticket.error is None and self._busy:
                    self._cond.wait()
                if ticket.error is not None:
                    raise ticket.error
                if ticket.results is not None:
                    return ticket.results
                self._busy = True  # this caller runs the first batch in line (its own or an older one)
                group = self._take()
            try:
                self._run_group(group)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _take(self) -> list[_Ticket]:
        """The first waiting batch and every later one that may join it (called with the lock held)."""
        first = self._waiting[0]
        group, size, limit = [first], len(first.requests), first.limit
        for ticket in self._waiting[1:]:
            joined_limit = min(limit, ticket.limit)
            if ticket.key == first.key and size + len(ticket.requests) <= joined_limit:
                group.append(ticket)
                size, limit = size + len(ticket.requests), joined_limit
        for ticket in group:
            self._waiting.remove(ticket)
        return group

    def _run_group(self, group: list[_Ticket]) -> None:
        joined = [r for ticket in group for r in ticket.requests]
        try:
            results = group[0].run(joined)
            self.calls += 1
        except BaseException as exc:  # noqa: BLE001 - every caller in the joined call gets the error
            for ticket in group:
                ticket.error = exc
            return
        start = 0
        for ticket in group:
            ticket.results = list(results[start : start + len(ticket.requests)])
            start += len(ticket.requests)


SHARED_DEVICE = SharedDevice()
