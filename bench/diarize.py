"""Diarization speed and memory on a generated multi-speaker input (espeak-ng voices, no recordings needed).

    python -m bench.diarize [--minutes 10] [--voices en+f3,en-us+m3,en-gb+m7] [--pauses 0.25:1.0]

Builds a `--minutes` conversation (tests/speakers_audio.py: one voice per utterance, the speaker changing
at every utterance, short replies among the sentences), then runs the default engine
(models.diarization.EmbeddingDiarizer) over the script's word times in a fresh child process, so its peak
RSS is the stage's own (torch, the encoder, the audio). Prints wall seconds (cold: with imports and the
encoder load; warm: a second run in the same process), RTF (seconds / audio seconds), peak RSS, the
speakers found and the diarization error rate (pyannote.metrics, no collar). Goal: RTF <= 0.05 on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from pathlib import Path
from models.diarization import EmbeddingDiarizer, SpeakerHints
spans = [tuple(s) for s in json.loads(Path(sys.argv[2]).read_text())]
engine = EmbeddingDiarizer()
turns = engine.diarize(Path(sys.argv[1]), spans, SpeakerHints())
cold = time.perf_counter() - t0
t1 = time.perf_counter()
turns = engine.diarize(Path(sys.argv[1]), spans, SpeakerHints())
warm = time.perf_counter() - t1
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"cold": cold, "warm": warm, "rss_mb": rss,
                  "turns": [[t.start, t.end, t.speaker] for t in turns]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--voices", default="en+f3,en-us+m3,en-gb+m7")
    parser.add_argument("--pauses", default="0.25:1.0", help="pause range between utterances, seconds")
    args = parser.parse_args()
    from tests.speakers_audio import der, random_conversation

    low, high = (float(x) for x in args.pauses.split(":"))
    voices = args.voices.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "conversation.wav"
        # ~1.8 s per utterance (a quarter are short replies) plus its pause
        n = max(4, int(args.minutes * 60 / (1.8 + (low + high) / 2)))
        t = time.perf_counter()
        conv = random_conversation(voices, n, (low, high), wav, seed=0, short_reply_every=4)
        built = time.perf_counter() - t
        spans_file = Path(tmp) / "spans.json"
        spans_file.write_text(json.dumps([[w.start, w.end] for w in conv.words]))
        root = Path(__file__).resolve().parent.parent
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(wav), str(spans_file)],
            cwd=root, capture_output=True, text=True, check=True,
        )  # fmt: skip
        result = json.loads(done.stdout.strip().splitlines()[-1])
    turns = [tuple(t) for t in result["turns"]]
    error = der(conv, turns)
    print(f"input: {conv.duration / 60:.1f} min, {len(conv.utterances)} utterances, {len(voices)} voices "
          f"({args.voices}), pauses {args.pauses} s; built in {built:.1f} s")  # fmt: skip
    print("| run | seconds | RTF |")
    print("|---|---|---|")
    cold = result["cold"]
    print(f"| cold (imports + encoder load + diarize) | {cold:.2f} | {cold / conv.duration:.4f} |")
    print(f"| warm (diarize) | {result['warm']:.2f} | {result['warm'] / conv.duration:.4f} |")
    print(f"peak RSS {result['rss_mb']:.0f} MB; speakers found {len({t[2] for t in turns})}; "
          f"DER {error:.2%}")  # fmt: skip


if __name__ == "__main__":
    main()
