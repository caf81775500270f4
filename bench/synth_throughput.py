"""API synthesis throughput at a configured rate limit, against the loopback DashScope.

    python -m bench.synth_throughput [--rpm 120] [--window 10] [--lines 480] [--concurrency 8]
                                     [--latency 1.0] [--margin 0] [--json FILE]

The synthesis stage as the flow runs it (tasks.synthesize.synthesize_lines: per-line threads, the clip
cache, models.dashscope_tts.DashScopeTTS through the real dashscope SDK, its models.pacing.RateLimiter and
core.retry policy) synthesises --lines distinct lines. The loopback server enforces the same limit
(--rpm requests in any sliding --window; beyond it: 429 Throttling.RateQuota) and holds every TTS request
for the service latency. Two scenarios: clean, and 429 at 10 % + 500 at 5 % on TTS requests (fixed seed).

Time scaling: DashScope counts requests per minute. To keep a run under two minutes the benchmark shrinks
every duration by the same factor s = 60 / --window: the client limiter's window (models.pacing.WINDOW_S)
and the server's rate_window_s become --window seconds, and the service latency and the retry policy's base
delay become their real values (--latency, 1 s) divided by s. The limiter's behaviour is invariant under
that scaling, so "share of the limit" carries over to the real 60 s window; absolute rates do not (--rpm per
--window seconds is s x --rpm per real minute).

Reported per scenario, from the server's own records:
- share of limit: how fully the limit is used once the first window's burst is spent: the limit lets
  request k start one window after request k - limit, so the share is window / (s[k] - s[k - limit])
  averaged over k (goal >= 90 %); "req" counts every request (what the client's limiter paces), "lines"
  only answers with audio (faulted requests use the limit and bring nothing);
- max/window: the most answered requests the server counted in any sliding window, against the limit;
- rate 429s: answers of the server's own limiter (the client overshot); injected: the random faults;
- failed lines: lines without a stored clip at the end (goal 0); billed once: every line's text billed
  exactly once, and the billed total equals the sum over the lines.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

FAULTS = {429: 0.10, 500: 0.05}
WORDS = [
    "harbour", "morning", "market", "river", "window", "garden", "station", "bridge", "evening", "letter",
    "mountain", "village", "lantern", "orchard", "festival", "library", "kitchen", "meadow", "island",
    "valley",
]  # fmt: skip


def make_lines(n: int) -> list:
    """n distinct English lines of 6-9 words (about 45 characters): distinct cache keys, realistic length."""
    from tasks.translate import TranslatedLine

    lines = []
    for i in range(n):
        words = [WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(6 + i % 4)]
        text = f"Line {i}: the {' and the '.join(words[:2])} near the {' '.join(words[2:])}."
        lines.append(TranslatedLine(i, i * 3.0, i * 3.0 + 2.5, 0.5, text, text))
    return lines


def steady_share(starts: list[float], limit: int, window: float) -> float:
    """Share of the limit used once the first window's burst is spent: the limit allows request k to start
    one window after request k - limit; window / (s[k] - s[k - limit]), averaged (harmonically) over k."""
    gaps = [starts[k] - starts[k - limit] for k in range(limit, len(starts))]
    return round(window * len(gaps) / sum(gaps), 3) if gaps else float("nan")


def max_in_window(starts: list[float], window: float) -> int:
    best, j = 0, 0
    for i, t in enumerate(starts):
        while starts[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def run_scenario(name: str, args: argparse.Namespace, faults: dict[int, float] | None) -> dict:
    import models.pacing
    from core.clip_cache import ClipCache, clip_key
    from core.languages import get_language
    from core.retry import RetryPolicy
    from models.dashscope_tts import DashScopeTTS
    from tasks.synthesize import synthesize_lines
    from tests.loopback_dashscope import LoopbackDashScope, _bill

    scale = 60.0 / args.window
    # the client limiter's sliding window, scaled like the server's, plus --margin (client side only); a
    # shipped margin (models.pacing.MARGIN_S, if the module has one) is replaced by --margin
    if hasattr(models.pacing, "MARGIN_S"):
        models.pacing.WINDOW_S, models.pacing.MARGIN_S = args.window, args.margin
    else:
        models.pacing.WINDOW_S = args.window + args.margin
    models.pacing._LIMITERS.clear()  # a fresh limiter: the previous scenario's starts must not count
    lines = make_lines(args.lines)
    language = get_language("en")
    with (
        tempfile.TemporaryDirectory(prefix="qwendub-synth-") as tmp,
        LoopbackDashScope(
            seconds_per_char=0.03, rate_window_s=args.window, rpm_limit={"tts": args.rpm}
        ) as server,
    ):
        os.environ["DASHSCOPE_HTTP_BASE_URL"] = server.base_http_api_url
        os.environ["DASHSCOPE_API_KEY"] = server.api_key
        server.delay("tts", args.latency / scale)
        if faults:
            server.fault_rate("tts", faults, seed=args.seed)
        synth = DashScopeTTS(
            rpm=args.rpm, concurrency=args.concurrency, retry=RetryPolicy(base_delay_s=1.0 / scale)
        )
        cache = ClipCache(Path(tmp) / "cache")
        error = ""
        t0 = time.perf_counter()
        try:
            synthesize_lines(
                lines, language, synth, cache, Path(tmp) / "clips", args.concurrency, "intl", batch_size=1
            )
        except Exception as exc:  # noqa: BLE001 - a benchmark reports a failed stage, it does not stop
            error = f"{type(exc).__name__}: {exc}"
        wall = time.perf_counter() - t0
        identity = synth.identity()
        stored = sum(cache.get(clip_key(identity, "en", ln.text)) is not None for ln in lines)
        tts = server.requests_of("tts")
        starts = sorted(r.started_at for r in tts)
        admitted = sorted(r.started_at for r in tts if r.status == 200)  # what the server's window counts
        billed = Counter(r.body["input"]["text"] for r in tts if r.status == 200 and r.billed_characters)
        expected_chars = sum(_bill(ln.text, True) for ln in lines)
        drawn = random_faults(args.seed, faults, len(tts))
        return {
            "scenario": name,
            "lines": len(lines),
            "requests": len(tts),
            "rate_429": sum(1 for r in tts if r.status == 429) - drawn[429],
            "injected": sum(drawn.values()),
            "span_s": round(starts[-1] - starts[0], 2) if starts else 0.0,
            "wall_s": round(wall, 2),
            "share_requests": steady_share(starts, args.rpm, args.window),
            "share_lines": steady_share(admitted, args.rpm, args.window),
            "max_window": max_in_window(admitted, args.window),
            "limit": args.rpm,
            "failed_lines": len(lines) - stored,
            "billed_once": set(billed.values()) == {1}
            and len(billed) == stored
            and server.billed_characters_total == expected_chars,
            "billed_characters": server.billed_characters_total,
            "error": error,
        }


def random_faults(seed: int, faults: dict[int, float] | None, requests: int) -> Counter:
    """The random faults LoopbackDashScope.fault_rate(seed=seed) drew for the first `requests` requests (one
    random.Random(seed).random() per request, statuses by cumulative probability in status order): the
    server marks its limiter's 429 answers and these alike, so the limiter's are the rest."""
    import random

    drawn: Counter = Counter()
    if not faults:
        return drawn
    rng = random.Random(seed)
    for _ in range(requests):
        draw, threshold = rng.random(), 0.0
        for status, p in sorted(faults.items()):
            threshold += p
            if draw < threshold:
                drawn[status] += 1
                break
    return drawn


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rpm", type=int, default=120, help="requests per window (client and server)")
    parser.add_argument("--window", type=float, default=10.0, help="sliding window, seconds (real: 60)")
    parser.add_argument("--lines", type=int, default=480)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency", type=float, default=1.0, help="service latency per request, real s")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument(
        "--margin",
        type=float,
        default=0.0,
        help="seconds added to the client limiter's window only, in scaled time (a safety margin; default 0)",
    )
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()

    rows = [run_scenario("clean", args, None), run_scenario("faults 429 10% + 500 5%", args, FAULTS)]
    scale = 60.0 / args.window
    print(
        f"\n## synthesis throughput: limit {args.rpm} requests / {args.window:g} s window "
        f"(time scale 1/{scale:g}: = {args.rpm} per real minute), {args.lines} lines, "
        f"concurrency {args.concurrency}, latency {args.latency:g} s real = {args.latency / scale:.3f} s, "
        f"client window margin {args.margin:g} s"
    )
    head = ("scenario", "requests", "429 limiter", "injected", "span s", "wall s", "share req", "share lines",
            "max/window", "failed", "billed once")  # fmt: skip
    print(" | ".join(head))
    for r in rows:
        print(" | ".join(str(v) for v in (
            r["scenario"], r["requests"], r["rate_429"], r["injected"], r["span_s"], r["wall_s"],
            f"{r['share_requests']:.1%}", f"{r['share_lines']:.1%}", f"{r['max_window']}/{r['limit']}",
            r["failed_lines"], "yes" if r["billed_once"] else "NO",
        )))  # fmt: skip
        if r["error"]:
            print(f"  stage failed: {r['error']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
