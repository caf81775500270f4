"""Synthesis stage: each translated line -> a clip, through one content-addressed clip cache.

Cache key = hash of (synthesizer identity: route, model snapshot, voice, instructions, parameters;
language; exact text). A re-run calls nothing; editing one line re-synthesises only that line.
Entries are written atomically (audio first, then its metadata, which is what marks it complete), so
concurrent runs and killed runs never leave an entry that is trusted half-written.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import task

from core.clip_cache import CLONE_SPEAKER, REVISION, ClipCache, clip_key
from core.config import CLONE_EVERY_LINE, DubConfig
from core.errors import ConfigError, UpstreamError
from core.files import atomic_path, content_key, write_json_atomic
from core.job import JobPaths
from core.languages import Language, get_language
from core.parallel import map_lines
from core.progress import NullProgress, StageProgress, stage_logger
from models.base import BatchSpeechSynthesizer, SpeechRequest, SpeechSynthesizer, SynthesizedClip
from models.billing import billed_characters
from models.registry import tts_engine
from models.tts_batching import SHARED_DEVICE
from tasks.media import STAGE
from tasks.segment import Line
from tasks.translate import TranslatedLine

if TYPE_CHECKING:
    from cloning.session import CloneSession


@dataclass
class ClipRecord:
    index: int
    path: str  # the job's link to the cache entry (work/clips/<lang>/NNNN.wav)
    sample_rate: int
    duration: float
    billed_characters: int
    attempts: int
    cached: bool
    key: str = ""  # the clip cache key: what the clip's audio is a function of
    guard: str = ""  # the local length guard's verdict on a clip kept after failing it ("too_long", ...)
    revision: int = 0  # times a guard retry replaced the cache entry's audio (core/clip_cache.py REVISION)

    @property
    def audio_id(self) -> str:
        """What the clip's audio is, for what is made from it (fit, track): its cache key, plus the
        revision once a retry replaced the entry (unchanged otherwise, so earlier fits stay valid)."""
        base = self.key or self.path
        return f"{base}#{self.revision}" if self.revision else base


def make_synthesizer(
    config: DubConfig, clone: CloneSession | None = None, require_key: bool = True
) -> SpeechSynthesizer:
    """The job's synthesizer: the consented clone's when one clone speaks every line (consent is checked
    again inside; an estimate, require_key=False, creates nothing), else the configured engine's
    (models/registry.py). Per-speaker clones come with job_voices."""
    if clone is not None and clone.every_line:
        synths = clone.synthesizers(config, JobPaths(config.out_dir, config.name), require_key=require_key,
                                    create=require_key)  # fmt: skip
        return synths[CLONE_EVERY_LINE]
    return tts_engine(config.tts).build(config, require_key)


def job_voices(config: DubConfig, clone: CloneSession | None = None, require_key: bool = True) -> JobVoices:
    """Who speaks each line of the job: the job's synthesizer, and with --clone S2=guest,... each cloned
    plan speaker's clone synthesizer (consent checked again; an estimate, require_key=False, creates
    nothing)."""
    synth = make_synthesizer(config, clone, require_key)
    clones: dict[str, SpeechSynthesizer] = {}
    if clone is not None and not clone.every_line:
        clones = clone.synthesizers(config, JobPaths(config.out_dir, config.name), require_key=require_key,
                                    create=require_key)  # fmt: skip
    return JobVoices(config, synth, clones)


class JobVoices:
    """Who speaks each line: its synthesizer (a cloned plan speaker's clone, else the job's) and the voice
    of each line, resolved per line (the line's own `voice` in segments.json, else its speaker's voice in
    --cast, else --voice: so the single --voice is the cast "everyone -> X"). A designed or cloned voice is
    the synthesizer's own (None).

    A line's clip cache key is its voice's identity with its language and text: for a job with one voice
    the keys are those of earlier versions, so existing caches stay valid (tests/test_voices.py pins them)."""

    def __init__(
        self,
        config: DubConfig,
        synth: SpeechSynthesizer,
        clones: Mapping[str, SpeechSynthesizer] | None = None,
    ) -> None:
        self.config = config
        self.synth = synth
        self.clones = dict(clones or {})  # plan speaker -> its clone's synthesizer (--clone S2=guest)
        self.fixed = CLONE_EVERY_LINE in config.clone_speakers or config.voice_design is not None
        self._identities: dict[tuple[int, str | None], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def synth_of(self, line: Line | TranslatedLine) -> SpeechSynthesizer:
        """The synthesizer that speaks `line`: its speaker's clone, else the job's."""
        return self.clones.get(line.speaker, self.synth)

    def voice_of(self, line: Line | TranslatedLine) -> str | None:
        if self.fixed or line.speaker in self.clones:
            return None
        return line.voice or self.config.cast.get(line.speaker) or self.config.voice

    def identity(self, voice: str | None, synth: SpeechSynthesizer | None = None) -> dict[str, Any]:
        synth = synth if synth is not None else self.synth
        with self._lock:
            key = (id(synth), voice)
            if key not in self._identities:
                self._identities[key] = synth.identity(voice)
            return self._identities[key]

    def identity_of(self, line: Line | TranslatedLine) -> dict[str, Any]:
        return self.identity(self.voice_of(line), self.synth_of(line))

    def key(self, line: TranslatedLine, language: str) -> str:
        return self.key_for(line, language, line.text)

    def key_for(self, line: Line | TranslatedLine, language: str, text: str) -> str:
        """The clip cache key of `text` spoken as `line` would be (a plan line and its translation)."""
        return clip_key(self.identity_of(line), language, text)

    def request(self, line: TranslatedLine, language: Language, earlier_tries: int = 0) -> SpeechRequest:
        """`earlier_tries`: runs that already had this line's clip flagged (ClipCache.guard_tries)."""
        return SpeechRequest(line.text, language, self.voice_of(line), earlier_tries)

    def _voice_name(self, line: Line | TranslatedLine) -> str:
        """A line's voice in the manifest: its catalogue voice, "" for the synthesizer's own, and
        "clone:<plan speaker>" for a cloned speaker's."""
        if line.speaker in self.clones:
            return f"clone:{line.speaker}"
        return self.voice_of(line) or ""

    def manifest(self, language: str, lines: list[TranslatedLine], clips: list[ClipRecord]) -> dict[str, Any]:
        """The clip manifest of a language: the job voice's identity, every voice used (voice -> identity;
        "" names the synthesizer's own voice, "clone:S2" a cloned speaker's) and the clips."""
        used = {self._voice_name(ln): self.identity_of(ln) for ln in lines}
        return {
            "language": language,
            # the job voice: --voice, else the one voice every line has (one speaker, cast), else the first's
            "identity": self.identity(self.config.voice)
            if self.config.voice and not self.fixed
            else next(iter(used.values()), self.identity(None)),
            "voices": used,
            "clips": [asdict(c) for c in clips],
        }


def check_line_voices(config: DubConfig, voices: list[str]) -> None:
    """Every voice a plan names (segments.json `voice`) is in the engine's catalogue: one line naming the
    voice before anything is paid for."""
    if not voices:
        return
    if CLONE_EVERY_LINE in config.clone_speakers or config.voice_design is not None:
        raise ConfigError("segments.json names voices per line, but this job speaks with one designed or "
                          "cloned voice")  # fmt: skip
    engine = tts_engine(config.tts)
    for voice in dict.fromkeys(voices):
        engine.resolve_voice(config, voice)


def audit_clone_use(
    clone: CloneSession | None, config: DubConfig, lang_code: str, lines: list[TranslatedLine]
) -> None:
    """Every synthesis with a cloned voice is appended to the consent ledger's audit log (no text): one
    entry per cloned speaker with lines in this language."""
    if clone is not None and lines:
        clone.audit_use(config, lang_code, lines)


def _link(src: Path, dst: Path) -> None:
    """Expose the cache entry in the job folder without copying (hard link; copy across filesystems)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            tmp.write_bytes(src.read_bytes())


def synthesize_lines(
    lines: list[TranslatedLine],
    language: Language,
    voices: JobVoices,
    cache: ClipCache,
    clips_dir: Path,
    workers: int,
    region: str,
    batch_size: int = 8,
    quiet: bool = False,
    auto_batch: bool = False,
) -> tuple[list[ClipRecord], dict[str, float]]:
    """Each line's clip, from the cache or new. `quiet`: no cost line and no progress artifact (a per-line
    task synthesising its one line). A device engine runs batches of at most `batch_size` lines, or with
    `auto_batch` as many as its free memory holds (off a GPU: `batch_size`)."""
    log = stage_logger()
    cache = cache.for_run()  # the flow run's, in the worker threads below too (guard-flagged entries)
    engine = tts_engine(voices.synth.route)
    keys = [voices.key(ln, language.code) for ln in lines]
    missing = [ln for ln, k in zip(lines, keys, strict=True) if cache.get(k) is None]
    estimate_chars = sum(billed_characters(ln.text) for ln in missing)
    cost, currency = engine.cost(estimate_chars, region)
    if not quiet:
        log.info(
            "estimate lang=%s lines_to_synthesize=%d cached=%d characters=%d cost=%.4f %s",
            language.code, len(missing), len(lines) - len(missing), estimate_chars, cost, currency,
        )  # fmt: skip
    progress = (
        NullProgress() if quiet else StageProgress(f"synthesize-{language.code}", len(lines), unit="lines")
    )
    totals = {"billed_characters": 0.0, "requests": 0.0, "attempts": 0.0, "guard_flagged": 0.0}
    lock = threading.Lock()

    def store(line: TranslatedLine, key: str, clip: SynthesizedClip) -> tuple[Path, dict[str, Any]]:
        guard = clip.extra.get("guard")  # local route: a clip kept after failing its length checks
        seed = clip.extra.get("seed")  # local route: the seed of the generate call that made the clip
        identity = voices.identity_of(line)
        clone = identity.get("clone")
        meta = {
            "billed_characters": clip.billed_characters,
            "attempts": clip.attempts,
            "requests": clip.requests,
            **({"guard": guard} if guard else {}),
            **({"seed": seed} if seed is not None else {}),
            # revoking a speaker's consent purges the clips made with their voice
            **({CLONE_SPEAKER: clone["speaker_id"]} if isinstance(clone, dict) else {}),
        }
        hit = cache.put(key, clip.audio, clip.sample_rate, meta)
        with lock:
            totals["billed_characters"] += clip.billed_characters
            totals["requests"] += clip.requests
            totals["attempts"] += clip.attempts
        log.info(
            "clip lang=%s line=%d voice=%s model=%s characters=%d attempts=%d duration_s=%.2f%s",
            language.code, line.index, identity.get("voice", identity.get("speaker", "")),
            identity.get("model", ""), clip.billed_characters, clip.attempts,
            clip.audio.size / clip.sample_rate, f" guard={guard}" if guard else "",
        )  # fmt: skip
        return hit

    def failed(exc: UpstreamError, what: str) -> UpstreamError:
        return UpstreamError(
            f"speech synthesis of {what} ({language.code}) failed: {exc.detail}",
            code=exc.code,
            status=exc.status,
        )

    batching = {ln.index for ln in missing if isinstance(voices.synth_of(ln), BatchSpeechSynthesizer)}
    if engine.batched and batching:  # batches per synthesizer: a cloned speaker's lines with its clone
        todo = [
            (ln, k)
            for ln, k in zip(lines, keys, strict=True)
            if ln.index in batching and cache.get(k) is None
        ]

        def limit(batch: list[tuple[TranslatedLine, str]]) -> int:
            synth = voices.synth_of(batch[0][0])
            assert isinstance(synth, BatchSpeechSynthesizer)
            fits = synth.batch_limit([voices.request(ln, language) for ln, _ in batch])
            return batch_size if fits is None else fits if auto_batch else min(batch_size, fits)

        for batch in voice_batches(todo, voices, limit):
            synth = voices.synth_of(batch[0][0])
            assert isinstance(synth, BatchSpeechSynthesizer)
            # languages synthesising at the same time share generate calls (same model, mode and voice)
            same_call = content_key("device-batch", voices.identity_of(batch[0][0]))
            # a line an earlier run had flagged is retried with seeds that run did not use
            requests = [voices.request(ln, language, cache.guard_tries(k)) for ln, k in batch]
            try:
                clips = SHARED_DEVICE.run(same_call, requests, limit(batch), synth.synthesize_requests)
            except UpstreamError as exc:
                raise failed(exc, f"lines {', '.join(str(ln.index) for ln, _ in batch)}") from None
            for (line, key), clip in zip(batch, clips, strict=True):
                store(line, key, clip)
                progress.advance()
        progress.set(0)  # the linking pass below reports the total

    def one(item: tuple[TranslatedLine, str]) -> ClipRecord:
        line, key = item
        hit = cache.get(key)
        cached = hit is not None
        if hit is None:
            try:
                clip = voices.synth_of(line).synthesize(line.text, language, voices.voice_of(line))
            except UpstreamError as exc:
                raise failed(exc, f"line {line.index}") from None
            hit = store(line, key, clip)
        wav, meta = hit
        link = clips_dir / f"{line.index:04d}.wav"
        _link(wav, link)
        guard = str(meta.get("guard") or "")
        if guard:  # flagged clips of the track, new or kept from an earlier run
            with lock:
                totals["guard_flagged"] += 1
        return ClipRecord(
            index=line.index,
            path=str(link),
            sample_rate=int(meta["sample_rate"]),
            duration=meta["frames"] / meta["sample_rate"],
            billed_characters=int(meta.get("billed_characters", 0)),
            attempts=0 if cached else int(meta.get("attempts", 1)),
            cached=cached,
            key=key,
            guard=guard,
            revision=int(meta.get(REVISION, 0)),
        )

    records = map_lines(list(zip(lines, keys, strict=True)), one, workers, on_done=progress.advance)
    totals["estimated_characters"] = estimate_chars
    return records, totals


DEFAULT_DEVICE_BATCH = 8  # lines per generate call off a GPU, when --tts-batch is not given
Item = tuple[TranslatedLine, str]  # a line and its clip cache key


def voice_batches(
    todo: list[Item], voices: JobVoices, limit: Callable[[list[Item]], int]
) -> list[list[Item]]:
    """Batches for a device engine: one synthesizer and one voice per batch (a cloned speaker's lines go to
    its clone), lines of similar length together (a generate
    call runs as long as its longest line), longest first. `limit(lines)` is how many lines like the
    first (the longest) one call may hold: the GPU's free memory decides it (bench/gpu.py measured
    0.3x real time at 1 line per call and 40x at 128 for the 1.7B model)."""
    by_voice: dict[tuple[int, str | None], list[Item]] = {}
    for item in todo:
        by_voice.setdefault((id(voices.synth_of(item[0])), voices.voice_of(item[0])), []).append(item)
    batches = []
    for items in by_voice.values():
        items.sort(key=lambda item: len(item[0].text), reverse=True)
        start = 0
        while start < len(items):
            size = max(1, limit(items[start : start + 1]))
            batches.append(items[start : start + size])
            start += size
    return batches


@task(name="synthesize", task_run_name="synthesize-{lang_code}", **STAGE)
def synthesize(
    lang_code: str,
    lines: list[TranslatedLine],
    config: DubConfig,
    clone: CloneSession | None,
    clips_dir: Path,
    manifest: Path,
) -> tuple[list[ClipRecord], dict[str, float]]:
    """A device engine's lines of one language, in batches (one task: batches need the lines together)."""
    language = get_language(lang_code)
    voices = job_voices(config, clone)
    audit_clone_use(clone, config, lang_code, lines)
    records, totals = synthesize_lines(
        lines, language, voices, ClipCache(config.cache_dir), clips_dir, config.concurrency, config.region,
        batch_size=config.tts_batch or DEFAULT_DEVICE_BATCH, auto_batch=config.tts_batch is None,
    )  # fmt: skip
    write_json_atomic(manifest, voices.manifest(lang_code, lines, records))
    stage_logger().info(
        "synthesized lang=%s lines=%d new=%d billed_characters=%d",
        lang_code, len(records), sum(not r.cached for r in records), int(totals["billed_characters"]),
    )  # fmt: skip
    return records, totals
