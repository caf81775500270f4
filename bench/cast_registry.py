"""The cast registry's match threshold (tasks.cast_registry.MATCH_THRESHOLD), measured.

    python -m bench.cast_registry [--texts 8] [--per-print 2] [--noise-db 20] [--threshold 0.95]

A registry entry is the voice print (models.speaker_embedding) of one speaker's lines in a finished job;
a later job's speaker is matched against it by the print of their own lines. This measures, on espeak-ng
voices (no recordings needed; resemblyzer's bundled GE2E encoder on CPU), how often that comparison
gives a speaker someone else's voice (false accept) or misses the same voice (false reject):

- each voice speaks `--texts` different texts (two Harvard sentences each) at varying speaking rates;
  variants espeak-ng does not know (it silently speaks the default voice) are detected and dropped;
- a "print" joins `--per-print` texts (about 5 s each), as a speaker's lines in one video are joined;
  a voice's prints never share a text, so every genuine pair is the same voice saying other things;
- "clean": as espeak-ng wrote it; "video": resampled to 16 kHz (the job's analysis copy), a short room
  echo and pink-ish noise `--noise-db` below the speech, independently for each print;
- genuine pairs: every two prints of one voice; impostor pairs: every two prints of different voices.

It prints the score ranges, the closest impostor voice pairs, a threshold sweep with false-accept and
false-reject rates for both conditions, and the rates at `--threshold`. Nothing is asserted; the figures
are quoted beside MATCH_THRESHOLD in tasks/cast_registry.py.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.espeak_speech import SENTENCES as ALL_SENTENCES
from bench.espeak_speech import speak, video_like

# espeak-ng variants: males of several accents (the hard cases: they sound alike to the encoder) and females.
# Not the bare language voices (`de`, `fr`, ...): they are espeak-ng's one default formant voice with other
# pronunciation rules, and scored 0.97-0.99 against `en` as the same voice would.
VOICES = [
    "en-us+m1", "en-us+m3", "en+m2", "en+m4", "en-us+m6", "en-gb+m7", "en+Andy", "en+klatt",
    "en-us+f3", "en+f4", "en+f2", "en-us+f5", "en-us+Annie", "en+Alicia", "en+Steph", "en+Zac",
]  # fmt: skip

SENTENCES = ALL_SENTENCES[:24]  # the texts this benchmark was measured with


@dataclass(frozen=True)
class Print:
    voice: str
    group: int
    clean: np.ndarray
    video: np.ndarray


def distinct_voices(voices: list[str], folder: Path) -> list[str]:
    """The variants that really differ: espeak-ng speaks an unknown variant with the default voice."""
    seen: dict[str, str] = {}
    kept = []
    for voice in voices:
        audio, _ = speak(voice, "A quick test of this voice.", folder / "probe.wav", 160)
        digest = hashlib.sha256(audio.tobytes()).hexdigest()
        if digest in seen:
            print(f"  {voice} speaks as {seen[digest]}: dropped")
            continue
        seen[digest] = voice
        kept.append(voice)
    return kept


def rates(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> tuple[float, float]:
    """(false-accept rate, false-reject rate) of accepting score >= threshold."""
    return float(np.mean(impostor >= threshold)), float(np.mean(genuine < threshold))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=12, help="texts per voice (two sentences each)")
    parser.add_argument("--per-print", type=int, default=3, help="texts joined into one voice print")
    parser.add_argument("--noise-db", type=float, default=20.0, help="video-like SNR")
    parser.add_argument("--threshold", type=float, default=0.95, help="the threshold to report rates at")
    args = parser.parse_args()
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is needed (apt-get install espeak-ng)")
    from models.speaker_embedding import EMBEDDING_MODEL, embed

    texts = [" ".join(SENTENCES[2 * i : 2 * i + 2]) for i in range(min(args.texts, len(SENTENCES) // 2))]
    groups = len(texts) // args.per_print
    started = time.perf_counter()
    prints: list[Print] = []
    with tempfile.TemporaryDirectory() as tmp:
        voices = distinct_voices(VOICES, Path(tmp))
        for v, voice in enumerate(voices):
            for g in range(groups):
                takes, rate = [], 0
                for t in range(g * args.per_print, (g + 1) * args.per_print):
                    speed = 150 + 10 * ((v + t) % 4)  # speaking rate varies from take to take
                    audio, rate = speak(voice, texts[t], Path(tmp) / "take.wav", speed)
                    takes += [audio, np.zeros(int(0.3 * rate), dtype=np.float32)]
                joined = np.concatenate(takes)
                noisy, noisy_rate = video_like(
                    joined, rate, args.noise_db, seed=1000 * v + g, out_rate=16_000
                )
                prints.append(Print(voice, g, embed(joined, rate), embed(noisy, noisy_rate)))
    print(f"encoder {EMBEDDING_MODEL}: {len(voices)} voices x {groups} prints of {args.per_print} texts, "
          f"synthesised and embedded in {time.perf_counter() - started:.0f} s")  # fmt: skip

    scores: dict[str, dict[str, list[float]]] = {
        c: {"genuine": [], "impostor": []} for c in ("clean", "video")
    }
    closest: dict[str, dict[tuple[str, str], float]] = {"clean": {}, "video": {}}
    for a, b in itertools.combinations(prints, 2):
        for cond in ("clean", "video"):
            score = float(np.dot(getattr(a, cond), getattr(b, cond)))
            scores[cond]["genuine" if a.voice == b.voice else "impostor"].append(score)
            if a.voice != b.voice:
                pair = (a.voice, b.voice)
                closest[cond][pair] = max(closest[cond].get(pair, -1.0), score)
    arrays = {c: {k: np.array(v) for k, v in d.items()} for c, d in scores.items()}
    n_g, n_i = len(scores["clean"]["genuine"]), len(scores["clean"]["impostor"])
    print(f"\npairs per condition: {n_g} genuine (same voice, other texts), {n_i} impostor\n")
    print("| condition | genuine min / 1 % / median | impostor median / 99 % / max |")
    print("|---|---|---|")
    for cond, arr in arrays.items():
        gen, imp = arr["genuine"], arr["impostor"]
        print(f"| {cond} | {gen.min():.3f} / {np.quantile(gen, 0.01):.3f} / {np.median(gen):.3f} | "
              f"{np.median(imp):.3f} / {np.quantile(imp, 0.99):.3f} / {imp.max():.3f} |")  # fmt: skip
    for cond in ("clean", "video"):
        print(f"\nclosest impostor voice pairs ({cond}):")
        for (first, second), score in sorted(closest[cond].items(), key=lambda kv: -kv[1])[:6]:
            print(f"  {first:<12} {second:<12} {score:.3f}")
    print("\n| threshold | FA clean | FR clean | FA video | FR video |")
    print("|---|---|---|---|---|")
    grid = sorted({*np.round(np.arange(0.85, 0.99, 0.01), 2).tolist(), args.threshold})
    for t in grid:
        fa_c, fr_c = rates(arrays["clean"]["genuine"], arrays["clean"]["impostor"], t)
        fa_v, fr_v = rates(arrays["video"]["genuine"], arrays["video"]["impostor"], t)
        mark = " (chosen)" if abs(t - args.threshold) < 1e-9 else ""
        print(f"| {t:.2f}{mark} | {fa_c:.2%} | {fr_c:.2%} | {fa_v:.2%} | {fr_v:.2%} |")
    cross = [float(np.dot(a.clean, b.video)) for a, b in itertools.combinations(prints, 2)]
    same = [a.voice == b.voice for a, b in itertools.combinations(prints, 2)]
    gen = np.array([s for s, k in zip(cross, same, strict=True) if k])
    imp = np.array([s for s, k in zip(cross, same, strict=True) if not k])
    fa, fr = rates(gen, imp, args.threshold)
    print(f"\nclean print vs noisy print at {args.threshold:.2f}: FA {fa:.2%} ({imp.size} pairs), "
          f"FR {fr:.2%} ({gen.size} pairs); genuine min {gen.min():.3f}, "
          f"impostor max {imp.max():.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
