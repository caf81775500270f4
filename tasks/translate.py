"""Translation stage: segments -> lines.<lang>.json, one cached translation per line."""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prefect import task

from core.config import DubConfig
from core.edits import adopt_proposal, proposal_path
from core.errors import ConfigError, UpstreamError
from core.files import content_key, read_json, write_json_atomic
from core.languages import Language, get_language
from core.parallel import map_lines
from core.progress import StageProgress, stage_logger
from models.base import Translator
from models.registry import translator_engine
from tasks.media import STAGE
from tasks.segment import Line
from text.glossary import Glossary, load_glossary, missing_terms, terms_for
from text.preservation import Item, is_strict_name, keep_terms, missing_items, refusal_reason
from text.speech_rate import character_budget, estimate_seconds, spoken_length

# A dubbed line ends at least 150 ms before the next line starts (quality.md), measured against where the
# next line's speech really begins. A plan's line start is itself measured (onset refinement, within
# about +-40 ms of a VAD onset on bench/timing.py), so the slot keeps 50 ms more than the rule.
BREATH_S = 0.2


def breath_slot_end(end: float, pause_after: float) -> float:
    """Where a line's dub must end: its own end plus the pause it may borrow, which is the pause after
    it minus a breath of BREATH_S before the next line. When the source lines themselves (nearly) touch,
    nothing is borrowed and the slot ends with the line."""
    return end + max(0.0, pause_after - BREATH_S)


@dataclass
class TranslatedLine:
    index: int
    start: float
    end: float
    pause_after: float
    source: str
    text: str
    budget_chars: int = 0  # what fits the slot at the language's natural pace (text/speech_rate.py)
    estimate_s: float = 0.0  # estimated spoken duration of `text`
    edited: bool = False  # the user changed `text` in lines.<lang>.json: kept as is, never shortened
    shortened: int = 0  # re-translations done to fit the slot (closed loop after synthesis)
    rewritten_to_fit: bool = False  # rewritten shorter before any synthesis (predicted over the cap)
    unkept: list[str] = field(default_factory=list)  # numbers/units/names lost in translation
    speaker: str = "S1"  # who says it (segments.json)
    voice: str | None = None  # the line's own voice (segments.json), over its speaker's

    @property
    def slot_end(self) -> float:
        return breath_slot_end(self.end, self.pause_after)

    @property
    def slot_s(self) -> float:
        return self.slot_end - self.start


def translated_line(line: Line, text: str, **fields: Any) -> TranslatedLine:
    """A plan line with its text in the target language (speaker and voice carried along)."""
    return TranslatedLine(
        line.index, line.start, line.end, line.pause_after, line.text, text,
        speaker=line.speaker, voice=line.voice, **fields,
    )  # fmt: skip


def with_budget(line: TranslatedLine, target: str) -> TranslatedLine:
    line.budget_chars = character_budget(line.slot_s, target)
    line.estimate_s = round(estimate_seconds(line.text, target), 3)
    return line


def line_budget(line: Line, target: Language) -> int:
    """The characters `line`'s translation may have: its slot (breath kept) at the language's pace."""
    return character_budget(breath_slot_end(line.end, line.pause_after) - line.start, target.code)


def text_hash(text: str) -> str:
    return content_key("line-text", text)[:16]


def _entries(path: Path) -> list[dict[str, Any]]:
    try:
        data = read_json(path)
        entries = data["lines"]
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"{path.name} is not valid (fix it or delete it to translate again)") from None
    return entries


def _is_edit(entry: dict[str, Any]) -> bool:
    text = entry.get("text")
    return isinstance(text, str) and (
        bool(entry.get("edited")) or text_hash(" ".join(text.split())) != entry.get("auto_hash")
    )


def holds_edits(path: Path) -> bool:
    """Whether lines.<lang>.json holds a translation the user wrote (one that cannot be read counts)."""
    if not path.is_file():
        return False
    try:
        return any(_is_edit(entry) for entry in _entries(path))
    except ConfigError:
        return True


def user_edits(path: Path, lines: list[Line]) -> tuple[dict[int, str], list[int]]:
    """The user's translations in an existing lines.<lang>.json: (index -> text for the lines of the plan
    they still belong to: same index and source text; the indices of edited entries that no longer belong
    to any line of the plan). An edit is a text that differs from what we wrote (`auto_hash`)."""
    if not path.is_file():
        return {}, []
    try:
        entries = {int(e["index"]): e for e in _entries(path)}
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{path.name} is not valid (fix it or delete it to translate again)") from None
    plan = {line.index: line for line in lines}
    edits: dict[int, str] = {}
    orphans: list[int] = []
    for index, entry in entries.items():
        if not _is_edit(entry):
            continue
        line = plan.get(index)
        if line is None or entry.get("source") != line.text:
            orphans.append(index)
            continue
        text = " ".join(entry["text"].split())
        if not text:
            raise ConfigError(f"{path.name}: line {index} has an empty translation")
        edits[index] = text
    return edits, sorted(orphans)


def read_kept_lines(path: Path) -> list[TranslatedLine]:
    """A user's lines.<lang>.json as the lines to dub, every one the user's (never shortened or
    rewritten): what a language is dubbed from when its file is kept against a new plan."""
    out: list[TranslatedLine] = []
    for n, e in enumerate(_entries(path)):
        try:
            line = TranslatedLine(
                index=int(e["index"]), start=float(e["start"]), end=float(e["end"]),
                pause_after=float(e.get("pause_after", 0.0)), source=str(e.get("source", "")),
                text=" ".join(str(e["text"]).split()), speaker=str(e.get("speaker", "S1")),
                voice=str(e["voice"]) if e.get("voice") else None, edited=True,
            )  # fmt: skip
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{path.name}: line {n} needs an 'index', 'start', 'end' and 'text'") from None
        if not line.text or line.end <= line.start:
            raise ConfigError(f"{path.name}: line {line.index} has an empty text or ends before it starts")
        out.append(line)
    if not out:
        raise ConfigError(f"{path.name} has no lines")
    return out


def translation_key(
    identity: dict[str, Any], source: Language | None, target: Language, text: str, context: Any = None
) -> str:
    return content_key("mt-v2", identity, source.code if source else "auto", target.code, text, context)


def item_key(identity: dict[str, Any], source: Language | None, target: Language, item: Any) -> str:
    """The cache key of a local-LLM item: its text and everything its prompt carries (neighbours, budget,
    glossary)."""
    return translation_key(identity, source, target, item.text, item.key_fields())


class TranslationCache:
    """One small JSON file per (translator identity, languages, text, context) under <cache>/mt/."""

    def __init__(self, root: Path) -> None:
        self.root = root / "mt"

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        p = self.path(key)
        try:
            value = read_json(p)["text"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return value if isinstance(value, str) and value.strip() else None

    def put(self, key: str, text: str) -> None:
        write_json_atomic(self.path(key), {"text": text})


# Context. The local LLM sees the 2 lines before and the 1 after (source text) in its prompt. Qwen-MT
# takes one message, so its context is translation memory: the previous lines of the same scene with
# their translations (tm_list), which keeps names, pronouns and register consistent. That makes a scene
# sequential; scenes run in parallel. A scene ends at a pause of SCENE_BREAK_S or after SCENE_MAX_LINES,
# so the grouping depends on the plan's timing only (never on --concurrency), and cache keys are stable.
CONTEXT_BEFORE, CONTEXT_AFTER = 2, 1
SCENE_BREAK_S = 2.0  # a silence this long usually ends an exchange
SCENE_MAX_LINES = 12  # bounds the sequential part: 12 lines at ~1 s per call


def scenes(lines: list[Line]) -> list[list[int]]:
    """Positions in `lines`, grouped into runs of consecutive lines translated in order."""
    groups: list[list[int]] = []
    for i, line in enumerate(lines):
        gap = line.start - lines[i - 1].end if i else float("inf")
        if not groups or gap >= SCENE_BREAK_S or len(groups[-1]) >= SCENE_MAX_LINES:
            groups.append([])
        groups[-1].append(i)
    return groups


def context_positions(lines: list[Line]) -> dict[int, list[int]]:
    """For each position, the positions of the lines Qwen-MT sees as context (same scene, just before)."""
    return {i: list(range(max(group[0], i - CONTEXT_BEFORE), i)) for group in scenes(lines) for i in group}


@dataclass
class _Outcome:
    text: str
    unkept: list[str]
    calls: int = 0
    cached: int = 0
    kept_retry: bool = False


class _LineTranslator:
    """One line through the engine and the cache, then the checks every translation must pass: a
    refusal or a non-translation fails the job naming the line; numbers, units and names that did not
    survive get one retry that asks for them explicitly (Qwen-MT: terms; local LLM: its glossary)."""

    def __init__(
        self,
        translator: Translator,
        cache: TranslationCache,
        source: Language | None,
        target: Language,
        terms: dict[str, str],
    ) -> None:
        self.translator, self.cache, self.source, self.target = translator, cache, source, target
        self.terms = terms
        self.identity = translator.identity()

    def budget(self, line: Line) -> int | None:
        """The line's length budget for engines that accept one (`takes_budget`, e.g. Qwen-MT)."""
        return line_budget(line, self.target) if getattr(self.translator, "takes_budget", False) else None

    def _call(self, line: Line, context: list[tuple[str, str]], keep: dict[str, str] | None) -> str:
        budget = self.budget(line)
        try:
            if budget is not None:
                return str(
                    self.translator.translate(  # type: ignore[call-arg]
                        line.text, self.source, self.target, context=context, keep=keep, max_chars=budget
                    )
                )
            return self.translator.translate(line.text, self.source, self.target, context=context, keep=keep)
        except UpstreamError as exc:
            raise UpstreamError(
                f"translation of line {line.index} ({self.target.code}) failed: {exc.detail}",
                code=exc.code,
                status=exc.status,
            ) from None

    def _cached_or_call(
        self, key: str, line: Line, context: list[tuple[str, str]], keep: dict[str, str] | None
    ) -> tuple[str, bool]:
        text = self.cache.get(key)
        if text is not None:
            return text, True
        text = " ".join(self._call(line, context, keep).split())
        try:
            check_translation(line, text, self.source, self.target)
            self.cache.put(key, text)
        finally:
            settle_reply(self.translator)
        return text, False

    def __call__(self, line: Line, context: list[tuple[str, str]]) -> _Outcome:
        key = translation_key(
            self.identity, self.source, self.target, line.text, _context_key(context, self.budget(line))
        )
        text, hit = self._cached_or_call(key, line, context, None)
        outcome = _Outcome(text, [], calls=0 if hit else 1, cached=1 if hit else 0)
        missing = lost_items(line.text, text, self.source, self.target, self.terms)
        if forceable(missing):
            keep = keep_terms(forceable(missing), self.target.code)
            retry, hit = self._cached_or_call(content_key(key, "keep", keep), line, context, keep)
            outcome.calls += 0 if hit else 1
            outcome.kept_retry = True
            still = lost_items(line.text, retry, self.source, self.target, self.terms)
            if len(still) < len(missing):
                outcome.text, missing = retry, still
        outcome.unkept = [item.surface for item in missing]
        return outcome


def _context_key(context: Any, budget: int | None) -> Any:
    """What besides the text keys a per-line translation: its context, and its budget when sent."""
    sources = [s for s, _ in context] if context and isinstance(context[0], tuple) else list(context)
    return sources if budget is None else {"context": sources, "max_chars": budget}


def lost_items(
    source_text: str, text: str, source: Language | None, target: Language, terms: dict[str, str]
) -> list[Item]:
    """Numbers, units and names of the source line missing from its translation (glossary terms are
    checked by the glossary; an auto-detected source outside our ten languages is not checked)."""
    if source is None:
        return []
    return missing_items(source_text, text, source.code, target.code, ignore=terms.keys())


def forceable(items: list[Item]) -> list[Item]:
    """What a retry may demand verbatim: numbers, units, and names that stay in Latin script in every
    language (acronyms, product names with digits or mixed case). An ordinary capitalised name can have
    a legitimate exonym (London -> Londres) the checker does not know: forcing it would make the line
    worse, so it is only reported."""
    return [item for item in items if item.kind != "name" or is_strict_name(item.surface)]


def settle_reply(translator: Any) -> None:
    """The reply just got is cached or rejected: an engine that journals its replies (core/journal.py)
    retires it, so the journal never hands a rejected reply back to a re-run."""
    retire = getattr(translator, "retire_last_reply", None)
    if retire is not None:
        retire()


def check_translation(line: Line, text: str, source: Language | None, target: Language) -> None:
    reason = refusal_reason(line.text, text, source.code if source else None, target.code)
    if reason:
        raise UpstreamError(
            f"translation of line {line.index} ({target.code}) is not usable: {reason} "
            f"(re-run to try again, or write the line yourself in lines.{target.code}.json)",
            code="BadTranslation",
        )


def translate_lines(
    lines: list[Line],
    source: Language | None,
    target: Language,
    translator: Translator | None,
    cache: TranslationCache,
    workers: int,
    terms: dict[str, str] | None = None,
    known: dict[int, str] | None = None,
) -> tuple[list[TranslatedLine], dict[str, int]]:
    """Translate every line of the plan whose text is not `known` (the user's own translations, index ->
    text, which still serve as context), cached per line. Source == target copies the text (no call).
    `terms` (glossary source -> target) go to the engine: Qwen-MT as translation_options.terms (set on
    the translator), the local LLM in its prompt."""
    known = known or {}
    todo = [ln for ln in lines if ln.index not in known]
    progress = StageProgress(f"translate-{target.code}", len(todo), unit="lines")
    if source is not None and source.code == target.code:
        progress.set(len(todo))
        copied = [translated_line(ln, ln.text) for ln in todo]
        return copied, {"calls": 0, "cached": 0, "copied": len(copied), "keep_retries": 0}
    assert translator is not None
    if hasattr(translator, "translate_batch"):
        return _translate_batched(lines, known, source, target, translator, cache, progress, terms or {})
    one = _LineTranslator(translator, cache, source, target, terms or {})
    done: dict[int, _Outcome] = {}
    lock = threading.Lock()

    before = context_positions(lines)

    def scene(positions: list[int]) -> None:
        for i in positions:  # in order: each line's context is the lines just before it
            line = lines[i]
            if line.index in known:
                continue
            context = []
            for j in before[i]:
                prev = lines[j]
                with lock:
                    prev_text = known.get(prev.index) or (done[prev.index].text if prev.index in done else "")
                context.append((prev.text, prev_text))
            outcome = one(line, context)
            with lock:
                done[line.index] = outcome
            progress.advance()

    map_lines(scenes(lines), scene, workers)
    return _collect(todo, done)


def _collect(todo: list[Line], done: dict[int, _Outcome]) -> tuple[list[TranslatedLine], dict[str, int]]:
    stats = {"calls": 0, "cached": 0, "copied": 0, "keep_retries": 0}
    out = []
    for ln in todo:
        o = done[ln.index]
        stats["calls"] += o.calls
        stats["cached"] += o.cached
        stats["keep_retries"] += int(o.kept_retry)
        out.append(translated_line(ln, o.text, unkept=o.unkept))
    return out, stats


def local_items(
    lines: list[Line], positions: list[int], target: Language, terms: dict[str, str]
) -> dict[int, Any]:
    """The local LLM's item per position: the line, its neighbours, its length budget, the glossary."""
    from models.local_translator import TranslationItem

    return {
        i: TranslationItem(
            lines[i].text,
            previous=[ln.text for ln in lines[max(0, i - CONTEXT_BEFORE) : i]],
            next=[ln.text for ln in lines[i + 1 : i + 1 + CONTEXT_AFTER]],
            max_chars=line_budget(lines[i], target),
            glossary=terms,
            index=lines[i].index,
        )
        for i in positions
    }


def cached_translations(
    lines: list[Line],
    source: Language | None,
    target: Language,
    translator: Translator,
    cache: TranslationCache,
    terms: dict[str, str],
) -> list[str | None]:
    """What translate_lines would give each line from the cache alone (None where a call is needed):
    the same keys, context and keep-retry choice, no engine. The cost estimate reads it."""
    identity = translator.identity()
    keys: dict[int, str]
    if hasattr(translator, "translate_batch"):
        items = local_items(lines, list(range(len(lines))), target, terms)
        keys = {i: item_key(identity, source, target, it) for i, it in items.items()}

        def retry_key(i: int, keep: dict[str, str]) -> str:
            item = dataclasses.replace(items[i], glossary={**terms, **keep})
            return item_key(identity, source, target, item)
    else:
        before = context_positions(lines)
        takes_budget = getattr(translator, "takes_budget", False)
        keys = {}
        for i, ln in enumerate(lines):
            budget = line_budget(ln, target) if takes_budget else None
            context_key = _context_key([lines[j].text for j in before[i]], budget)
            keys[i] = translation_key(identity, source, target, ln.text, context_key)

        def retry_key(i: int, keep: dict[str, str]) -> str:
            return content_key(keys[i], "keep", keep)

    out: list[str | None] = []
    for i, line in enumerate(lines):
        text = cache.get(keys[i])
        if text is not None:
            missing = lost_items(line.text, text, source, target, terms)
            if forceable(missing):
                retry = cache.get(retry_key(i, keep_terms(forceable(missing), target.code)))
                if retry is not None and len(lost_items(line.text, retry, source, target, terms)) < len(
                    missing
                ):
                    text = retry
        out.append(text)
    return out


def _translate_batched(
    lines: list[Line],
    known: dict[int, str],
    source: Language | None,
    target: Language,
    translator: Any,
    cache: TranslationCache,
    progress: StageProgress,
    terms: dict[str, str],
) -> tuple[list[TranslatedLine], dict[str, int]]:
    """Local LLM route: every uncached line in batched generate calls, each with its neighbours as
    context (so the cache key includes the context: the same sentence elsewhere may translate
    differently); lines that lost a number or name get a second batch with them in the glossary."""
    positions = [i for i, ln in enumerate(lines) if ln.index not in known]
    items = local_items(lines, positions, target, terms)
    identity = translator.identity()

    def run(batch: dict[int, Any], keys: dict[int, str]) -> tuple[dict[int, str], int]:
        texts = {i: cache.get(keys[i]) for i in batch}
        todo = [i for i in batch if texts[i] is None]
        if todo:
            try:
                results = translator.translate_batch([batch[i] for i in todo], source, target)
            except UpstreamError as exc:
                raise UpstreamError(
                    f"translation ({target.code}) failed: {exc.detail}", code=exc.code, status=exc.status
                ) from None
            for i, text in zip(todo, results, strict=True):
                text = " ".join(text.split())
                check_translation(lines[i], text, source, target)
                cache.put(keys[i], text)
                texts[i] = text
        return {i: str(t) for i, t in texts.items()}, len(todo)

    keys = {i: item_key(identity, source, target, item) for i, item in items.items()}
    progress.set(sum(cache.get(k) is not None for k in keys.values()))
    texts, calls = run(items, keys)
    cached = len(positions) - calls
    missing = {i: lost_items(lines[i].text, texts[i], source, target, terms) for i in positions}
    retry_items = {
        i: dataclasses.replace(items[i], glossary={**terms, **keep_terms(forceable(m), target.code)})
        for i, m in missing.items()
        if forceable(m)
    }
    if retry_items:
        retry_keys = {i: item_key(identity, source, target, item) for i, item in retry_items.items()}
        retried, more = run(retry_items, retry_keys)
        calls += more
        for i, text in retried.items():
            still = lost_items(lines[i].text, text, source, target, terms)
            if len(still) < len(missing[i]):
                texts[i], missing[i] = text, still
    progress.set(len(positions))
    done = {
        lines[i].index: _Outcome(texts[i], [m.surface for m in missing[i]], kept_retry=i in retry_items)
        for i in positions
    }
    out, stats = _collect([lines[i] for i in positions], done)
    stats["calls"], stats["cached"] = calls, cached
    return out, stats


# -- fit before paying: a translation predicted to need more than the speed-up cap is rewritten shorter
# before it is synthesised (the closed loop after synthesis then rarely pays for a line twice)

PREFIT_AIM = 0.9  # the rewrite aims this far under the cap: the rate estimate is not exact per voice


def predicted_speedup(line: TranslatedLine, target: str, chars_per_second: float | None = None) -> float:
    """The speed-up the line's dub is predicted to need: estimated spoken time over its slot, at the
    language's pace (text/speech_rate.py) or at `chars_per_second` measured for the voice."""
    seconds = (
        spoken_length(line.text) / chars_per_second
        if chars_per_second
        else estimate_seconds(line.text, target)
    )
    return seconds / max(line.slot_s, 0.05)


def shorten_key(identity: dict[str, Any], target: str, source_text: str, text: str, budget: int) -> str:
    """The cache key of one shortening (shared with the loop after synthesis, tasks/line.py)."""
    return content_key("shorten-v1", identity, target, source_text, text, budget)


def fit_before_synthesis(
    lines: list[TranslatedLine],
    source: Language | None,
    target: Language,
    shortener: Any,
    cache: TranslationCache,
    max_speedup: float,
    workers: int = 1,
    chars_per_second: float | None = None,
) -> tuple[list[TranslatedLine], dict[str, int]]:
    """Lines (not the user's, not copies of the source) whose predicted speed-up exceeds `max_speedup`
    are rewritten by the shortener to PREFIT_AIM of the cap, cached; a rewrite is kept only when shorter."""
    out = list(lines)
    stats = {"predicted_over_cap": 0, "rewritten_to_fit": 0, "rewrite_calls": 0}
    lock = threading.Lock()
    todo = [
        i for i, ln in enumerate(lines)
        if not ln.edited and ln.text != ln.source
        and predicted_speedup(ln, target.code, chars_per_second) > max_speedup
    ]  # fmt: skip
    stats["predicted_over_cap"] = len(todo)
    identity = shortener.identity() if todo else {}

    def one(i: int) -> None:
        line = lines[i]
        seconds = line.slot_s * max_speedup * PREFIT_AIM
        budget = (
            max(4, int(seconds * chars_per_second))
            if chars_per_second
            else character_budget(seconds, target.code)
        )
        key = shorten_key(identity, target.code, line.source, line.text, budget)
        text = cache.get(key)
        called = text is None
        if text is None:
            try:
                text = shortener.shorten(line.source, line.text, source, target, budget)
            except UpstreamError as exc:
                raise UpstreamError(
                    f"shortening of line {line.index} ({target.code}) failed: {exc.detail}",
                    code=exc.code,
                    status=exc.status,
                ) from None
            text = " ".join(str(text).split())
            cache.put(key, text)
        with lock:
            stats["rewrite_calls"] += int(called)
            if text and len(text) < len(line.text):
                out[i] = with_budget(dataclasses.replace(line, text=text, rewritten_to_fit=True), target.code)
                stats["rewritten_to_fit"] += 1

    map_lines(todo, one, workers)
    return out, stats


def lines_to_json(lang: Language, source: str, lines: list[TranslatedLine]) -> dict[str, Any]:
    """The editable translation file: change a line's `text` and re-run; only that line is re-done."""
    return {
        "language": lang.code,
        "source_language": source,
        "lines": [{**asdict(ln), **({} if ln.edited else {"auto_hash": text_hash(ln.text)})} for ln in lines],
    }


def translator_for(config: DubConfig, require_key: bool = True) -> Translator:
    return translator_engine(config.translator).build(config, require_key)


def glossary_of(config: DubConfig) -> Glossary | None:
    return load_glossary(config.glossary) if config.glossary else None


def keep_or_adopt_lines(
    out_json: Path, new: dict[str, Any], orphans: list[int], config: DubConfig
) -> list[TranslatedLine] | None:
    """lines.<lang>.json holds translations the user wrote for lines the plan no longer has (the plan
    changed under them): the file is never overwritten. The new translation of the plan goes beside it
    (lines.<lang>.proposed.json) and the language is dubbed from the user's file as written (returned);
    --adopt-proposal takes the new translation instead (None; the user's file kept as
    lines.<lang>.replaced.json)."""
    log = stage_logger()
    shown = ",".join(str(i) for i in orphans[:10])
    if config.adopt_proposal:
        write_json_atomic(proposal_path(out_json), new)
        kept = adopt_proposal(out_json)
        log.warning(
            "translation: adopted the new %s (yours, with edits of lines %s, is kept as %s)",
            out_json.name, shown, kept.name,
        )  # fmt: skip
        return None
    lines = read_kept_lines(out_json)
    write_json_atomic(proposal_path(out_json), new)
    log.warning(
        "translation kept: %s holds your edits of lines %s, which the plan no longer has; the new "
        "translation is in %s (--adopt-proposal takes it)",
        out_json.name, shown, proposal_path(out_json).name,
    )  # fmt: skip
    return lines


@task(name="translate", task_run_name="translate-{lang_code}", **STAGE)
def translate(
    lang_code: str, source_lang: str, lines: list[Line], config: DubConfig, out_json: Path
) -> list[TranslatedLine]:
    target = get_language(lang_code)
    try:
        source: Language | None = get_language(source_lang)
    except ConfigError:
        source = None  # a detected language outside the ten: let the engine auto-detect
    translator = None
    if source is None or source.code != target.code:
        translator = translator_for(config)
    edits, orphans = user_edits(out_json, lines)
    terms = terms_for(glossary_of(config), target.code)
    translated, stats = translate_lines(
        lines, source, target, translator, TranslationCache(config.cache_dir), config.concurrency, terms,
        known=edits,
    )  # fmt: skip
    misses = [ln.index for ln in translated if missing_terms(ln.source, ln.text, terms)]
    if misses:
        stage_logger().warning(
            "glossary lang=%s lines_missing_terms=%d lines=%s", target.code, len(misses),
            ",".join(str(i) for i in misses[:20]),
        )  # fmt: skip
    by_index = {ln.index: ln for ln in translated}
    for line in lines:
        if line.index in edits:
            by_index[line.index] = translated_line(line, edits[line.index], edited=True)
    translated = [with_budget(by_index[ln.index], target.code) for ln in lines]
    stats["edited"] = len(edits)
    if translator is not None and config.shorten:
        shortener = translator_engine(config.translator).shortener(config, True)
        translated, fit_stats = fit_before_synthesis(
            translated, source, target, shortener, TranslationCache(config.cache_dir), config.max_speedup,
            config.concurrency,
        )  # fmt: skip
        stats.update(fit_stats)
    unkept = [ln.index for ln in translated if ln.unkept]
    if unkept:  # counts and line numbers only: the items themselves are script text
        stage_logger().warning(
            "preservation lang=%s lines_with_lost_numbers_or_names=%d lines=%s (see 'unkept' in %s)",
            target.code, len(unkept), ",".join(str(i) for i in unkept[:20]), out_json.name,
        )  # fmt: skip
    if orphans:
        kept = keep_or_adopt_lines(out_json, lines_to_json(target, source_lang, translated), orphans, config)
        if kept is not None:
            return [with_budget(line, target.code) for line in kept]
    else:
        write_json_atomic(out_json, lines_to_json(target, source_lang, translated))
        proposal_path(out_json).unlink(missing_ok=True)  # any earlier proposal no longer applies
    stage_logger().info(
        "translated lang=%s lines=%d calls=%d cached=%d copied=%d edited=%d keep_retries=%d "
        "predicted_over_cap=%d rewritten_to_fit=%d",
        target.code, len(translated), stats["calls"], stats["cached"], stats["copied"], stats["edited"],
        stats["keep_retries"], stats.get("predicted_over_cap", 0), stats.get("rewritten_to_fit", 0),
    )  # fmt: skip
    return translated
