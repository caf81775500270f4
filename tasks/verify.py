"""Closed-loop check (`--verify`): re-transcribe each dub track with the configured Whisper model and
score every line against the text that was meant to be spoken.

How the track is read: decoded once to 16 kHz mono; each line's placed span [start, start + placed_s]
is cut with MARGIN_S on both sides (never into a neighbour's span); the spans are laid end to end with
the gaps between them kept as they are up to MAX_GAP_S and shortened to MAX_GAP_S of silence beyond,
and that one "compacted" signal is transcribed in a single call with word timestamps. Each word goes to
the line whose span holds its midpoint (the nearest one when it falls in a gap).

Why not one transcription per line: Whisper's encoder always runs on a 30 s window, so a 2 s line costs
as much as a 30 s stretch, and with no context around it tiny/small models misrecognise more. On 40
espeak-ng lines (tiny.en, 2 cores) per-line decoding took 2.5-3x the time of the compacted track and
scored a track WER of 0.28 against 0.12-0.14. Why not the whole track as it is: its cost follows the
track length rather than the speech, and long music-only stretches are where Whisper hallucinates;
Silero VAD avoids that but may drop quiet or sped-up speech, while the placed spans are known exactly.

Metric: WER on words after normalisation (NFKC, case folded, digits spelled out in the language,
punctuation and symbols removed); for Japanese, Chinese and Korean, CER on characters with all spaces
removed, since word segmentation is not defined there. Each record names its metric.
"""

from __future__ import annotations

import bisect
import re
import subprocess
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
from prefect import task

from core.errors import ConfigError, UpstreamError
from core.files import content_key, is_fresh, mark_fresh, read_json, sha256_file, write_json_atomic
from core.languages import Language, get_language
from core.progress import StageProgress, stage_logger
from tasks.media import ANALYSIS_RATE, STAGE, require_tool
from tasks.translate import TranslatedLine

DEFAULT_THRESHOLD = 0.3  # a line whose error rate is above this is flagged
MARGIN_S = 0.25  # audio kept around each placed span (fades, recogniser context), never past a neighbour
MAX_GAP_S = 1.0  # longer gaps between spans are shortened to this much silence before recognition
CER_LANGUAGES = frozenset({"ja", "zh", "ko"})
BEAM_SIZE = 5  # as in the transcription stage; greedy decoding was ~30 % faster but misheard more
GROUP_S = 300.0  # seconds of compacted audio recognised per call (bounded memory; see span_groups)
LOGGED_FLAGS = 20  # flagged lines listed (index:rate) in the summary log line


@dataclass
class LineCheck:
    index: int
    metric: str  # "wer" (word error rate) or "cer" (character error rate, ja/zh/ko)
    wer: float  # error rate under `metric`: (substitutions + deletions + insertions) / reference units
    words: int  # reference units: words for "wer", characters for "cer"
    errors: int
    flagged: bool
    heard: str  # what the recogniser heard (kept in verify.<lang>.json, never logged)


@dataclass
class VerifyResult:
    language: str
    model: str
    metric: str
    threshold: float
    track_wer: float  # corpus level: all errors / all reference units of the track
    words: int
    errors: int
    flagged: int
    lines: list[LineCheck] = field(default_factory=list)

    @property
    def flagged_indices(self) -> list[int]:
        return [c.index for c in self.lines if c.flagged]

    def summary(self) -> dict[str, Any]:
        """The figures without any text, for the job report."""
        return {
            "model": self.model,
            "metric": self.metric,
            "track_wer": self.track_wer,
            "lines": len(self.lines),
            "flagged": self.flagged,
            "flagged_lines": self.flagged_indices,
        }

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VerifyResult:
        fields = {k: v for k, v in data.items() if k != "lines"}
        return cls(**fields, lines=[LineCheck(**c) for c in data.get("lines", [])])


# -- text normalisation and error rates ----------------------------------------------------------------

_APOSTROPHES = re.compile("['\u2019\u02bc\u2018`]")


def metric_for(language_code: str) -> str:
    return "cer" if get_language(language_code).code in CER_LANGUAGES else "wer"


def normalise(text: str, language_code: str) -> list[str]:
    """The units the error rate counts: words, or characters (no spaces) for ja/zh/ko."""
    from models.qwen_local_tts import spell_out_numbers  # light import: no model libraries at top level

    language = get_language(language_code)
    text = unicodedata.normalize("NFKC", text)
    # both sides get the same spelling of numbers: a recogniser writes "50" for a spoken "fifty"
    text = spell_out_numbers(text, language).casefold()
    text = _APOSTROPHES.sub("", text)  # "don't" == "dont", "l'homme" == "lhomme"
    text = "".join(" " if unicodedata.category(ch)[0] in "PSC" else ch for ch in text)
    if language.code in CER_LANGUAGES:
        return [ch for ch in text if not ch.isspace()]
    return text.split()


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance over tokens (substitutions, deletions, insertions all cost 1), by jiwer."""
    if not ref or not hyp:
        return len(ref) + len(hyp)  # jiwer refuses an empty reference
    # tokens hold no whitespace (words split on it; characters with spaces dropped): joined with
    # spaces, jiwer's default word split gives them back one for one
    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    return out.substitutions + out.deletions + out.insertions


def error_rate(reference: str, hypothesis: str, language_code: str) -> tuple[str, float, int, int]:
    """(metric, rate, errors, reference units) of one line. A line with no reference units scores 0
    when nothing was heard and 1 otherwise."""
    ref, hyp = normalise(reference, language_code), normalise(hypothesis, language_code)
    errors = edit_distance(ref, hyp)
    rate = errors / len(ref) if ref else float(bool(hyp))
    return metric_for(language_code), rate, errors, len(ref)


# -- model -----------------------------------------------------------------------------------------------


def english_only_name(model_name: str) -> bool:
    """Names of English-only Whisper checkpoints: *.en, and Distil-Whisper (trained on English only)."""
    base = Path(model_name).name.lower()
    return base.endswith(".en") or base.startswith("distil-")


def require_model_for(asr_model: str, language_code: str, model: Any = None) -> None:
    """ConfigError when the model cannot transcribe the language: by its name (cheap, for an early
    check of the options) and, given the loaded model, by what the checkpoint says it is."""
    language = get_language(language_code)
    if language.whisper == "en":
        return
    english_only = english_only_name(asr_model)
    if model is not None and not english_only:
        english_only = not bool(model.model.is_multilingual)
    if english_only:
        raise ConfigError(
            f"--verify: the ASR model {Path(asr_model).name} is English-only and cannot check the "
            f"{language.name} dub; pass a multilingual --asr-model (e.g. small or large-v3)"
        )


# -- audio -----------------------------------------------------------------------------------------------


def decode_mono(
    audio_file: Path, rate: int = ANALYSIS_RATE, start: float = 0.0, end: float | None = None
) -> np.ndarray:
    """The track (or its seconds [start, end)) as float32 mono at `rate` (ffmpeg decodes any codec the
    dub was encoded with, and seeks to `start` sample-accurately)."""
    span = (["-ss", f"{start:.6f}"] if start > 0 else []) + (["-t", f"{end - start:.6f}"] if end else [])
    cmd = [
        require_tool("ffmpeg"), "-nostdin", "-hide_banner", "-loglevel", "error",
        *span, "-i", str(audio_file), "-vn", "-ac", "1", "-ar", str(rate), "-f", "f32le", "pipe:1",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        last = (proc.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        raise UpstreamError(f"ffmpeg failed to decode {Path(audio_file).name}: {last}", code="ffmpeg")
    return np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)


@dataclass(frozen=True)
class Span:
    index: int  # line index
    lo: float  # seconds in the track
    hi: float


def line_spans(timings: list[Any], duration: float, margin: float = MARGIN_S) -> list[Span]:
    """Each placed line's span with `margin` either side, at most halfway to a neighbour's placed
    audio (spans never overlap) and inside the track. Lines with nothing placed have no span."""
    placed = sorted((t for t in timings if t.placed_s > 0), key=lambda t: t.start)
    spans = []
    for n, t in enumerate(placed):
        lo, hi = t.start - margin, t.start + t.placed_s + margin
        if n > 0:
            prev_end = placed[n - 1].start + placed[n - 1].placed_s
            lo = max(lo, min(t.start, (prev_end + t.start) / 2))
        if n + 1 < len(placed):
            end = t.start + t.placed_s
            hi = min(hi, max(end, (end + placed[n + 1].start) / 2))
        lo, hi = max(0.0, lo), min(duration, hi)
        if hi > lo:
            spans.append(Span(t.index, lo, hi))
    return spans


def compact(
    audio: np.ndarray, rate: int, spans: list[Span], max_gap: float = MAX_GAP_S
) -> tuple[np.ndarray, list[Span]]:
    """The spans laid end to end: gaps up to `max_gap` kept as in the track, longer ones replaced by
    `max_gap` of silence. Returns the signal and each span's place in it."""
    parts: list[np.ndarray] = []
    placed: list[Span] = []
    pos, prev = 0, 0
    for span in spans:
        lo, hi = int(round(span.lo * rate)), int(round(span.hi * rate))
        gap = audio[prev:lo] if lo - prev <= max_gap * rate else np.zeros(int(max_gap * rate), np.float32)
        piece = audio[lo:hi]
        parts += [gap, piece]
        pos += gap.size
        placed.append(Span(span.index, pos / rate, (pos + piece.size) / rate))
        pos += piece.size
        prev = hi
    if not parts:
        return np.zeros(0, np.float32), []
    return np.concatenate(parts).astype(np.float32, copy=False), placed


def span_groups(spans: list[Span], limit_s: float | None = None) -> list[list[Span]]:
    """Consecutive spans in groups whose compacted audio (spans plus gaps of at most MAX_GAP_S) stays
    within `limit_s` (a single longer span is a group of its own)."""
    limit = GROUP_S if limit_s is None else limit_s
    groups: list[list[Span]] = []
    length = 0.0
    for span in spans:
        size = span.hi - span.lo
        gap = 0.0 if not groups or not groups[-1] else min(MAX_GAP_S, span.lo - groups[-1][-1].hi)
        if groups and groups[-1] and length + gap + size <= limit:
            groups[-1].append(span)
            length += gap + size
        else:
            groups.append([span])
            length = size
    return groups


def assign_words(words: list[tuple[float, float, str]], spans: list[Span]) -> dict[int, str]:
    """Each recognised word to the span that holds its midpoint, else the nearest span."""
    heard: dict[int, list[str]] = {s.index: [] for s in spans}
    if not spans:
        return {}
    starts = [s.lo for s in spans]
    for start, end, text in words:
        mid = (start + end) / 2
        k = bisect.bisect_right(starts, mid) - 1
        candidates = [c for c in (k, k + 1) if 0 <= c < len(spans)]
        best = min(candidates, key=lambda c: max(spans[c].lo - mid, mid - spans[c].hi, 0.0))
        heard[spans[best].index].append(text)
    return {index: "".join(parts).strip() for index, parts in heard.items()}


# -- the check -------------------------------------------------------------------------------------------


def _recognise(
    model: Any, audio: np.ndarray, language: Language, progress: StageProgress | None
) -> list[tuple[float, float, str]]:
    if audio.size == 0:
        return []
    segments, info = model.transcribe(
        audio,
        language=language.whisper,
        beam_size=BEAM_SIZE,
        word_timestamps=True,
        vad_filter=False,  # the spans are where the speech is; silence between them is short
        condition_on_previous_text=False,  # no repetition loops, and each line stands on its own
    )
    words: list[tuple[float, float, str]] = []
    for seg in segments:
        words += [(w.start, w.end, w.word) for w in (seg.words or [])]
        if progress is not None:
            progress.set(min(seg.end, info.duration), info.duration)
    return words


def verify_track(
    audio_file: Path | str,
    lines: list[TranslatedLine],
    timings: list[Any],
    language_code: str,
    asr_model: str,
    threshold: float = DEFAULT_THRESHOLD,
    progress: StageProgress | None = None,
) -> VerifyResult:
    """Re-transcribe the dub track and score each line's text against what the recogniser heard.
    `timings` are the assembly's LineTiming records (index, start, placed_s); `asr_model` is the
    --asr-model value (name, "auto" or a CTranslate2 directory)."""
    from models.whisper_asr import FasterWhisperTranscriber, load_model

    language = get_language(language_code)
    transcriber = FasterWhisperTranscriber(asr_model)
    require_model_for(transcriber.name, language.code)
    model = load_model(transcriber.name, transcriber.device, transcriber.compute_type)
    require_model_for(transcriber.name, language.code, model)

    texts = {line.index: line.text for line in lines}
    missing = [t.index for t in timings if t.index not in texts]
    if missing:
        raise ValueError(f"verify: timings for lines with no text: {missing[:10]}")

    heard: dict[int, str] = {}
    # groups of lines of at most GROUP_S of audio, each decoded and recognised on its own: memory is
    # bounded by a group whatever the track's length, and no line is split between groups
    for group in span_groups(line_spans(timings, float("inf"))):
        lo, hi = group[0].lo, group[-1].hi
        audio = decode_mono(Path(audio_file), ANALYSIS_RATE, lo, hi)
        local = [Span(s.index, s.lo - lo, min(s.hi - lo, audio.size / ANALYSIS_RATE)) for s in group]
        signal, placed = compact(audio, ANALYSIS_RATE, [s for s in local if s.hi > s.lo])
        heard.update(assign_words(_recognise(model, signal, language, progress), placed))

    checks = []
    for t in timings:
        said = heard.get(t.index, "")
        metric, rate, errors, units = error_rate(texts[t.index], said, language.code)
        checks.append(LineCheck(t.index, metric, round(rate, 4), units, errors, rate > threshold, said))
    words = sum(c.words for c in checks)
    errors = sum(c.errors for c in checks)
    return VerifyResult(
        language=language.code,
        model=Path(transcriber.name).name,
        metric=metric_for(language.code),
        threshold=threshold,
        track_wer=round(errors / words, 4) if words else 0.0,
        words=words,
        errors=errors,
        flagged=sum(c.flagged for c in checks),
        lines=checks,
    )


def summary_line(result: VerifyResult) -> str:
    """One log line of figures only: indices, rates and counts, never text."""
    flagged = [f"{c.index}:{c.wer:.2f}" for c in result.lines if c.flagged]
    shown = ",".join(flagged[:LOGGED_FLAGS])
    if len(flagged) > LOGGED_FLAGS:
        shown += f",+{len(flagged) - LOGGED_FLAGS}"
    return (
        f"verified lang={result.language} model={result.model} metric={result.metric} "
        f"track_{result.metric}={result.track_wer:.3f} lines={len(result.lines)} words={result.words} "
        f"flagged={result.flagged} threshold={result.threshold:.2f} flagged_lines={shown or '-'}"
    )


@task(name="verify", task_run_name="verify-{lang_code}", **STAGE)
def verify(
    lang_code: str,
    audio_file: Path,
    lines: list[TranslatedLine],
    timings: list[Any],
    asr_model: str,
    out_json: Path,
    threshold: float = DEFAULT_THRESHOLD,
) -> VerifyResult:
    """Verify one dub track and write work/verify.<lang>.json (cached on the track's bytes, the model,
    the texts and the timings)."""
    from models.whisper_asr import FasterWhisperTranscriber

    transcriber = FasterWhisperTranscriber(asr_model)
    key = content_key(
        "verify-v1",
        sha256_file(Path(audio_file)),
        transcriber.identity(),
        get_language(lang_code).code,
        [(line.index, line.text) for line in lines],
        [(t.index, t.start, t.placed_s) for t in timings],
        threshold,
    )
    log = stage_logger()
    if is_fresh(out_json, key):
        result = VerifyResult.from_json(read_json(out_json))
    else:
        progress = StageProgress(f"verify-{lang_code}", 1.0, unit="s")
        result = verify_track(audio_file, lines, timings, lang_code, asr_model, threshold, progress)
        progress.set(progress.total)
        write_json_atomic(out_json, result.to_json())
        mark_fresh(out_json, key)
    log.info("%s", summary_line(result))
    return result
