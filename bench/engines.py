"""Engine throughput on CPU: translation (API and local routes) and local TTS.

    python -m bench.engines [--mt-lines 100] [--llm-lines 32] [--tts-lines 8]

- translation, API route: tasks.translate.translate_lines (the stage's per-line threads, workers=8, and its
  TranslationCache in a temporary folder) with models.qwen_mt.QwenMTTranslator through the real dashscope
  SDK against tests/loopback_dashscope.LoopbackDashScope (no service latency). The client's rate limiter
  is set far above the request count (rpm 100000) so that it does not bind: the figure is the client's and
  loopback's own overhead. With the shipped default mt_rpm = 60 the route is capped at 1 line/s once the
  first minute's 60 requests are spent. Rows: concurrency 8 (= workers), the default concurrency 4, and a
  re-run of the same lines from the cache, and a fresh run with 0.3 s of service latency per request
  (lines of a scene are translated in order, each seeing the previous ones as tm_list context, so the
  parallelism is min(scenes, workers): these lines, 2.5 s each with 0.5 s gaps, form scenes of 12).
- translation, local route: models.local_translator.LocalLLMTranslator with the tiny random Qwen2 LM
  (tests/tiny_qwen_lm.py: 1 layer, 32 wide, the real 151 k-token Qwen tokenizer) via measure_throughput
  (generation only, model load and one warm-up batch untimed), batch sizes 1 and 8. The tiny model never
  emits end-of-turn, so every line runs to its token limit (the column "tokens/line").
- TTS: models.qwen_local_tts.QwenLocalTTS with the tiny random Qwen3-TTS CustomVoice checkpoint
  (tests/tiny_qwen_tts.py), speaker Vivian, synthesize_batch at batch sizes 1, 4 and 8 over the same lines
  (one untimed warm-up call first). The tiny talker never emits EOS, so each clip runs to its length-guard
  ceiling; retries=0 so that each batch is exactly one generate call (with the default retries=2 every
  line would be regenerated twice more, as a missed EOS).

torch runs with 1 thread (torch.set_num_threads(1)) for the local engines. Random weights: the figures are
the cost of the architecture and the adapters, not of the published models. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

WORDS = [
    "harbour", "morning", "market", "river", "window", "garden", "station", "bridge", "evening", "letter",
    "mountain", "village", "lantern", "orchard", "festival", "library", "kitchen", "meadow", "island",
    "valley",
]  # fmt: skip


def make_texts(n: int) -> list[str]:
    """n distinct English lines of 6-9 words (about 45-60 characters)."""
    texts = []
    for i in range(n):
        words = [WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(6 + i % 4)]
        texts.append(f"Line {i}: the {' and the '.join(words[:2])} near the {' '.join(words[2:])}.")
    return texts


def table(title: str, head: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    print(f"\n## {title}\n")
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


# -- translation, API route ----------------------------------------------------------------------------


def bench_api(n_lines: int) -> None:
    import prefect.artifacts

    import models.pacing
    from core.languages import get_language
    from models.qwen_mt import QwenMTTranslator
    from tasks.segment import Line
    from tasks.translate import TranslationCache, translate_lines
    from tests.loopback_dashscope import LoopbackDashScope

    # core.progress.StageProgress creates a Prefect progress artifact even outside a flow run, which starts
    # a temporary Prefect server (~20 s): the stage runs bare here, as a library call.
    prefect.artifacts.create_progress_artifact = lambda *a, **k: None  # type: ignore[assignment]
    lines = [Line(i, i * 3.0, i * 3.0 + 2.5, t, 0.5) for i, t in enumerate(make_texts(n_lines))]
    source, target = get_language("en"), get_language("ja")
    rows = []
    with tempfile.TemporaryDirectory(prefix="qwendub-mt-") as tmp, LoopbackDashScope() as server:
        os.environ["DASHSCOPE_HTTP_BASE_URL"] = server.base_http_api_url
        os.environ["DASHSCOPE_API_KEY"] = server.api_key
        # untimed warm-up (SDK import, first connection), on other lines and its own cache
        warm = [Line(i, 0.0, 2.5, f"Warm-up line {i}.", 0.5) for i in range(8)]
        translate_lines(warm, source, target, QwenMTTranslator(rpm=100_000, concurrency=8),
                        TranslationCache(Path(tmp) / "warm"), workers=8)  # fmt: skip
        runs = [("concurrency 8, fresh", 8, "a", 0.0), ("concurrency 4 (default), fresh", 4, "b", 0.0),
                ("concurrency 8, all cached", 8, "a", 0.0),
                ("concurrency 8, fresh, 0.3 s service latency", 8, "c", 0.3)]  # fmt: skip
        for name, concurrency, cache_name, latency in runs:
            server.delay("mt", latency)  # a scene's lines go in order (tm_list context): latency binds
            models.pacing._LIMITERS.clear()
            translator = QwenMTTranslator(rpm=100_000, concurrency=concurrency)
            cache = TranslationCache(Path(tmp) / cache_name)
            before = len(server.requests_of("mt"))
            t0 = time.perf_counter()
            result, stats = translate_lines(lines, source, target, translator, cache, workers=8)
            seconds = time.perf_counter() - t0
            requests = len(server.requests_of("mt")) - before
            assert len(result) == n_lines
            rows.append((name, n_lines, 8, concurrency, requests, stats["cached"], f"{seconds:.2f}",
                         f"{n_lines / seconds:.1f}", f"{1000 * seconds / n_lines:.1f}"))  # fmt: skip
    table(
        "translation, API route: Qwen-MT client -> loopback DashScope (rpm limit 100000)",
        ("run", "lines", "workers", "concurrency", "requests", "cached", "wall s", "lines/s", "ms/line"),
        rows,
    )


# -- translation, local route --------------------------------------------------------------------------


def bench_local_mt(n_lines: int, work: Path) -> None:
    from core.languages import get_language
    from models.local_translator import LocalLLMTranslator, TranslationItem, measure_throughput
    from tests.tiny_qwen_lm import build_tiny_qwen_lm

    t0 = time.perf_counter()
    model_dir = build_tiny_qwen_lm(work / "tiny-qwen-lm")
    built = time.perf_counter() - t0
    texts = make_texts(n_lines)
    items = [
        TranslationItem(
            t, previous=texts[max(0, i - 2) : i], next=texts[i + 1 : i + 2], max_chars=60, index=i
        )
        for i, t in enumerate(texts)
    ]
    source, target = get_language("en"), get_language("ja")
    translator = LocalLLMTranslator(model=str(model_dir), device="cpu")
    t0 = time.perf_counter()
    translator.load()
    loaded = time.perf_counter() - t0
    tokens = sum(translator.token_limit(item) for item in items) / len(items)
    prompt_tokens = sum(
        len(translator.lm.tokenizer(p, add_special_tokens=False)["input_ids"])
        for p in translator.render_prompts(items, source, target)
    ) / len(items)
    rows = []
    for size in (1, 8):
        r = measure_throughput(translator, items, source, target, batch_size=size)
        rows.append((size, r.lines, f"{r.seconds:.2f}", f"{r.lines_per_second:.2f}", f"{tokens:.0f}",
                     f"{r.lines * tokens / r.seconds:.0f}", f"{prompt_tokens:.0f}"))  # fmt: skip
    table(
        f"translation, local route: tiny random Qwen2 LM, torch 1 thread (built {built:.1f} s, "
        f"loaded {loaded:.1f} s)",
        ("batch", "lines", "wall s", "lines/s", "tokens/line", "new tokens/s", "prompt tokens/line"),
        rows,
    )


# -- local TTS -----------------------------------------------------------------------------------------


def bench_tts(n_lines: int, work: Path) -> None:
    from core.languages import get_language
    from models.qwen_local_tts import QwenLocalTTS
    from tests.tiny_qwen_tts import build_tiny_qwen_tts

    t0 = time.perf_counter()
    dirs = build_tiny_qwen_tts(work / "tiny-qwen-tts", ["custom_voice"])
    built = time.perf_counter() - t0
    tts = QwenLocalTTS(model=str(dirs["custom_voice"]), speaker="Vivian", retries=0, device="cpu")
    language = get_language("en")
    texts = make_texts(n_lines)
    t0 = time.perf_counter()
    tts.load()
    loaded = time.perf_counter() - t0
    tts.synthesize_batch(texts[:1], language)  # warm-up: one-off costs of the first generate call
    rows = []
    for size in (1, 4, 8):
        clips = []
        t0 = time.perf_counter()
        for start in range(0, n_lines, size):
            clips += tts.synthesize_batch(texts[start : start + size], language)
        seconds = time.perf_counter() - t0
        audio = sum(c.audio.size / c.sample_rate for c in clips)
        rows.append((size, len(clips), -(-n_lines // size), f"{seconds:.2f}", f"{len(clips) / seconds:.2f}",
                     f"{audio:.1f}", f"{audio / len(clips):.2f}", f"{audio / seconds:.2f}"))  # fmt: skip
    table(
        f"local TTS: tiny random Qwen3-TTS CustomVoice, speaker Vivian, torch 1 thread, retries 0 "
        f"(built {built:.1f} s, loaded {loaded:.1f} s)",
        ("batch", "clips", "calls", "wall s", "clips/s", "clip audio s", "s/clip", "audio s per wall s"),
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mt-lines", type=int, default=100, help="lines for the API route")
    parser.add_argument("--llm-lines", type=int, default=64, help="lines for the local LLM route")
    parser.add_argument("--tts-lines", type=int, default=16, help="lines per TTS batch-size run")
    parser.add_argument("--only", choices=("api", "local", "tts"), action="append", help="run only these")
    args = parser.parse_args()
    only = set(args.only or ("api", "local", "tts"))

    import logging

    import torch
    import transformers

    torch.set_num_threads(1)
    # one "flagged too_long" warning per clip (the tiny talker never stops) and transformers' pad-token notes
    logging.getLogger("models.qwen_local_tts").setLevel(logging.ERROR)
    transformers.logging.set_verbosity_error()
    started = time.perf_counter()
    print(f"{os.cpu_count()} cores; torch threads {torch.get_num_threads()}; load average at start "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="qwendub-engines-") as tmp:
        if "api" in only:
            bench_api(args.mt_lines)
        if "local" in only:
            bench_local_mt(args.llm_lines, Path(tmp))
        if "tts" in only:
            bench_tts(args.tts_lines, Path(tmp))
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average at the end "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip


if __name__ == "__main__":
    main()
