"""Synthesis stage: each translated line -> a clip, through one content-addressed clip cache.

Cache key = hash of (synthesizer identity: route, model snapshot, voice, instructions, parameters;
language; exact text). A re-run calls nothing; editing one line re-synthesises only that line.
Entries are written atomically (audio first, then its metadata, which is what marks it complete), so
concurrent runs and killed runs never leave an entry that is trusted half-written.
"""

from __future__ import annotations

import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prefect import task

from core.clip_cache import ClipCache, clip_key
from core.errors import ConfigError, UpstreamError
from core.files import atomic_path, write_json_atomic
from core.languages import Language, get_language
from core.parallel import map_lines
from core.progress import NullProgress, StageProgress, stage_logger
from core.retry import RetryPolicy
from models.base import SpeechSynthesizer, SynthesizedClip
from models.billing import billed_characters, price
from tasks.media import STAGE
from tasks.translate import TranslatedLine


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


def clone_reference_path(config: Any) -> Path:
    from core.job import JobPaths

    return JobPaths(config.out_dir, config.name).clone_reference


def make_synthesizer(config: Any, require_key: bool = True) -> SpeechSynthesizer:
    if getattr(config, "clone", None):
        from cloning.voice import synthesizer_for_config

        # consent is checked again inside; an estimate (require_key=False) enrolls nothing
        return synthesizer_for_config(
            config, clone_reference_path(config), create=require_key, require_key=require_key
        )
    if config.tts == "api":
        from models.dashscope_tts import DashScopeTTS

        return DashScopeTTS(
            model=config.tts_model,
            voice=config.voice,
            region=config.region,
            stream=config.stream,
            instructions=config.instructions,
            rpm=config.tts_rpm,
            concurrency=config.concurrency,
            retry=RetryPolicy.of(config),
            require_key=require_key,
        )
    if config.tts == "local":
        from models.qwen_local_tts import QwenLocalTTS

        return QwenLocalTTS(
            mode="voice_design" if config.voice_design else "custom_voice",
            model=config.tts_local_model,
            size=config.tts_size,
            speaker=config.voice or "Vivian",
            instructions=config.instructions,
            description=config.voice_design,
            prompt_cache_dir=config.cache_dir / "voice_prompts",
        )
    raise ConfigError(f"unknown TTS route {config.tts!r}")


def audit_clone_use(config: Any, lang_code: str, line_count: int) -> None:
    """Every synthesis with a cloned voice is appended to the consent ledger's audit log (no text)."""
    from cloning.ledger import audit_clone_synthesis
    from cloning.voice import grant_for_config

    try:
        from prefect.runtime import flow_run

        job_id = str(flow_run.id or config.name)
    except Exception:  # noqa: BLE001 - outside a flow run the video name identifies the job
        job_id = config.name
    audit_clone_synthesis(grant_for_config(config), job_id=job_id, language=lang_code, line_count=line_count,
                          route=config.tts)  # fmt: skip


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
    synth: SpeechSynthesizer,
    cache: ClipCache,
    clips_dir: Path,
    workers: int,
    region: str,
    batch_size: int = 8,
    quiet: bool = False,
) -> tuple[list[ClipRecord], dict[str, float]]:
    """`quiet`: no cost line and no progress artifact (a per-line task synthesising its one line)."""
    log = stage_logger()
    identity = synth.identity()
    keys = [clip_key(identity, language.code, ln.text) for ln in lines]
    missing = [ln for ln, k in zip(lines, keys, strict=True) if cache.get(k) is None]
    estimate_chars = sum(billed_characters(ln.text) for ln in missing)
    cost, currency = price(estimate_chars, region) if identity.get("route") == "api" else (0.0, "")
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
        clone = identity.get("clone")
        meta = {
            "billed_characters": clip.billed_characters,
            "attempts": clip.attempts,
            "requests": clip.requests,
            **({"guard": guard} if guard else {}),
            # revoking a speaker's consent purges the clips made with their voice
            **({"clone_speaker": clone["speaker_id"]} if isinstance(clone, dict) else {}),
        }
        hit = cache.put(key, clip.audio, clip.sample_rate, meta)
        with lock:
            totals["billed_characters"] += clip.billed_characters
            totals["requests"] += clip.requests
            totals["attempts"] += clip.attempts
            totals["guard_flagged"] += 1 if guard else 0
        log.info(
            "clip lang=%s line=%d voice=%s model=%s characters=%d attempts=%d duration_s=%.2f%s",
            language.code, line.index, identity.get("voice", ""), identity.get("model", ""),
            clip.billed_characters, clip.attempts, clip.audio.size / clip.sample_rate,
            f" guard={guard}" if guard else "",
        )  # fmt: skip
        return hit

    def failed(exc: UpstreamError, what: str) -> UpstreamError:
        return UpstreamError(
            f"speech synthesis of {what} ({language.code}) failed: {exc.detail}",
            code=exc.code,
            status=exc.status,
        )

    batch_api = getattr(synth, "synthesize_batch", None)
    if batch_api is not None and missing:
        # Local engine: lines of similar length share a generate call (a batch runs as long as its
        # longest line), one batch at a time on the device.
        todo = sorted(
            ((ln, k) for ln, k in zip(lines, keys, strict=True) if cache.get(k) is None),
            key=lambda item: len(item[0].text),
        )
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            try:
                clips = batch_api([ln.text for ln, _ in batch], language)
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
                clip = synth.synthesize(line.text, language)
            except UpstreamError as exc:
                raise failed(exc, f"line {line.index}") from None
            hit = store(line, key, clip)
        wav, meta = hit
        link = clips_dir / f"{line.index:04d}.wav"
        _link(wav, link)
        return ClipRecord(
            index=line.index,
            path=str(link),
            sample_rate=int(meta["sample_rate"]),
            duration=meta["frames"] / meta["sample_rate"],
            billed_characters=int(meta.get("billed_characters", 0)),
            attempts=0 if cached else int(meta.get("attempts", 1)),
            cached=cached,
            key=key,
        )

    records = map_lines(list(zip(lines, keys, strict=True)), one, workers, on_done=progress.advance)
    totals["estimated_characters"] = estimate_chars
    return records, totals


@task(name="synthesize", task_run_name="synthesize-{lang_code}", **STAGE)
def synthesize(
    lang_code: str, lines: list[TranslatedLine], config: Any, clips_dir: Path, manifest: Path
) -> tuple[list[ClipRecord], dict[str, float]]:
    language = get_language(lang_code)
    synth = make_synthesizer(config)
    if getattr(config, "clone", None):
        audit_clone_use(config, lang_code, len(lines))
    records, totals = synthesize_lines(
        lines, language, synth, ClipCache(config.cache_dir), clips_dir, config.concurrency, config.region,
        batch_size=config.tts_batch,
    )  # fmt: skip
    write_json_atomic(
        manifest, {"language": lang_code, "identity": synth.identity(), "clips": [asdict(r) for r in records]}
    )
    stage_logger().info(
        "synthesized lang=%s lines=%d new=%d billed_characters=%d",
        lang_code, len(records), sum(not r.cached for r in records), int(totals["billed_characters"]),
    )  # fmt: skip
    return records, totals
