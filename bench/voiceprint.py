"""The voice-print threshold of consent-bound cloning (cloning.voiceprint.MATCH_THRESHOLD), measured.

    python -m bench.voiceprint [--voices 14] [--texts 8] [--threshold 0.90] [--noise-db 30]

A consent record's voice print is the embedding (models.speaker_embedding) of a sample recording given at
`consent add --sample`; at job time the reference chosen from the video speaker's lines is embedded and
compared. This measures, on espeak-ng voices (no recordings needed; the encoder is resemblyzer's bundled
GE2E, CPU), how often that comparison accepts another voice (false accept) or refuses the same voice
(false reject):

- each voice speaks `--texts` different texts (two Harvard sentences each, 4-8 s); the first is its
  enrollment sample, the others stand for references chosen from a video;
- "clean": the reference as espeak-ng wrote it (22.05 kHz); "video": the reference as a job sees it,
  resampled to 24 kHz (what select_reference writes) with pink-ish noise `--noise-db` below the speech
  and a short room echo;
- genuine pairs: a voice's enrollment sample against each of its own references (and every pair of its
  texts, for the spread); impostor pairs: a voice's enrollment sample against every other voice's
  references. Sample and reference never share a text.

It prints the score ranges, the closest impostor voice pairs, a threshold sweep (false-accept rate over
impostor pairs, false-reject rate over genuine pairs, both conditions), and the equal-error threshold.
Nothing is asserted; the figures are quoted beside MATCH_THRESHOLD in cloning/voiceprint.py.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.espeak_speech import SENTENCES, speak, video_like

# espeak-ng voice variants: males of three accents (the hard cases: they sound alike to the encoder),
# females, and a few of the named variants.
VOICES = [
    "en-us+m1", "en-us+m3", "en+m2", "en-gb+m7", "en+m4", "en-gb+m5", "en-us+m6",
    "en-us+f3", "en+f4", "en+f2", "en-gb+f1", "en-us+f5",
    "en+Andy", "en+klatt", "en-gb+Mike", "en-us+Annie",
]  # fmt: skip


@dataclass(frozen=True)
class Sample:
    voice: str
    text: int
    clean: np.ndarray  # the voice print of the recording as written
    video: np.ndarray  # ... of the recording as a job's reference would be


def is_male(voice: str) -> bool:
    return "+m" in voice or voice.endswith(("Andy", "klatt", "Mike"))


def rates(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> tuple[float, float]:
    """(false-accept rate, false-reject rate) of accepting score >= threshold."""
    return float(np.mean(impostor >= threshold)), float(np.mean(genuine < threshold))


def eer(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    """(threshold, rate) where false accepts and false rejects are closest."""
    grid = np.round(np.arange(0.50, 1.0, 0.001), 3)
    gaps = [abs(np.subtract(*rates(genuine, impostor, t))) for t in grid]
    best = float(grid[int(np.argmin(gaps))])
    fa, fr = rates(genuine, impostor, best)
    return best, (fa + fr) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--voices", type=int, default=len(VOICES))
    parser.add_argument("--texts", type=int, default=8, help="texts per voice (the first is the sample)")
    parser.add_argument("--threshold", type=float, default=0.90, help="the threshold to report rates at")
    parser.add_argument("--noise-db", type=float, default=30.0, help="video-like reference SNR")
    args = parser.parse_args()
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is needed (apt-get install espeak-ng)")
    from models.speaker_embedding import EMBEDDING_MODEL, embed

    voices = VOICES[: args.voices]
    texts = [" ".join(SENTENCES[2 * i : 2 * i + 2]) for i in range(min(args.texts, len(SENTENCES) // 2))]
    started = time.perf_counter()
    samples: list[Sample] = []
    with tempfile.TemporaryDirectory() as tmp:
        for v, voice in enumerate(voices):
            for t, text in enumerate(texts):
                speed = 150 + 10 * ((v + t) % 4)  # speaking rate varies from take to take
                audio, rate = speak(voice, text, Path(tmp) / "take.wav", speed)
                noisy, noisy_rate = video_like(audio, rate, args.noise_db, seed=1000 * v + t)
                samples.append(Sample(voice, t, embed(audio, rate), embed(noisy, noisy_rate)))
    seconds = time.perf_counter() - started
    print(f"encoder {EMBEDDING_MODEL}: {len(samples)} takes ({len(voices)} voices x {len(texts)} texts), "
          f"synthesised and embedded twice in {seconds:.0f} s")  # fmt: skip

    enrolled = {s.voice: s for s in samples if s.text == 0}
    references = [s for s in samples if s.text != 0]
    scores: dict[str, dict[str, list[float]]] = {"clean": {"genuine": [], "impostor": []},
                                                 "video": {"genuine": [], "impostor": []}}  # fmt: skip
    closest: dict[str, dict[tuple[str, str], float]] = {"clean": {}, "video": {}}
    kinds: dict[str, dict[str, list[float]]] = {"clean": {}, "video": {}}  # impostor scores per pair kind
    for ref in references:
        for voice, sample in enrolled.items():
            for cond in ("clean", "video"):
                score = float(np.dot(sample.clean, getattr(ref, cond)))
                scores[cond]["genuine" if voice == ref.voice else "impostor"].append(score)
                if voice != ref.voice:
                    pair = (voice, ref.voice)
                    closest[cond][pair] = max(closest[cond].get(pair, -1.0), score)
                    kind = "same sex" if is_male(voice) == is_male(ref.voice) else "male vs female"
                    kinds[cond].setdefault(kind, []).append(score)
    spread = [float(np.dot(a.clean, b.clean)) for a, b in itertools.combinations(samples, 2)
              if a.voice == b.voice]  # fmt: skip

    n_genuine, n_impostor = len(scores["clean"]["genuine"]), len(scores["clean"]["impostor"])
    print(f"\npairs: {n_genuine} genuine and {n_impostor} impostor per condition "
          "(enrollment sample vs another text's reference)")  # fmt: skip
    print("| condition | genuine min / 1 % / median | impostor median / 99 % / max | EER threshold | EER |")
    print("|---|---|---|---|---|")
    arrays = {c: {k: np.array(v) for k, v in d.items()} for c, d in scores.items()}
    for cond, arr in arrays.items():
        g, i = arr["genuine"], arr["impostor"]
        t, rate = eer(g, i)
        genuine = f"{g.min():.3f} / {np.quantile(g, 0.01):.3f} / {np.median(g):.3f}"
        impostor = f"{np.median(i):.3f} / {np.quantile(i, 0.99):.3f} / {i.max():.3f}"
        print(f"| {cond} | {genuine} | {impostor} | {t:.3f} | {rate:.1%} |")
    print(f"same voice, any two texts (clean): min {min(spread):.3f}, median {np.median(spread):.3f}")

    for cond in ("clean", "video"):
        print(f"\nclosest impostor voice pairs ({cond}, max over references):")
        for (a, b), score in sorted(closest[cond].items(), key=lambda kv: -kv[1])[:8]:
            print(f"  sample {a:<12} reference {b:<12} {score:.3f}")
    print("\n| threshold | FA clean | FR clean | FA video | FR video |")
    print("|---|---|---|---|---|")
    grid = sorted({*np.round(np.arange(0.80, 0.96, 0.01), 2).tolist(), args.threshold})
    for t in grid:
        fa_c, fr_c = rates(arrays["clean"]["genuine"], arrays["clean"]["impostor"], t)
        fa_v, fr_v = rates(arrays["video"]["genuine"], arrays["video"]["impostor"], t)
        mark = " (chosen)" if abs(t - args.threshold) < 1e-9 else ""
        print(f"| {t:.2f}{mark} | {fa_c:.2%} | {fr_c:.2%} | {fa_v:.2%} | {fr_v:.2%} |")
    print(f"\nimpostor pairs by kind at {args.threshold:.2f}:")
    for cond in ("clean", "video"):
        for kind, values in sorted(kinds[cond].items()):
            arr = np.array(values)
            print(f"  {cond:<5} {kind:<14} {arr.size:>5} pairs  max {arr.max():.3f}  "
                  f"FA {float(np.mean(arr >= args.threshold)):.2%}")  # fmt: skip


if __name__ == "__main__":
    main()
