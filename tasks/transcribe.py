"""Transcription stage: faster-whisper with VAD and word timestamps -> work/transcript.json."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from core.errors import InputError
from core.files import content_key, is_fresh, mark_fresh, read_json, write_json_atomic
from core.gpu import release_gpu_models
from core.progress import StageProgress, stage_logger
from models.base import Transcript
from models.whisper_asr import FasterWhisperTranscriber, load_model
from tasks.media import STAGE


@task(name="transcribe", **STAGE)
def transcribe(
    vocals: Path, vocals_key: str, asr_model: str, source_lang: str | None, out_json: Path
) -> tuple[Transcript, str]:
    transcriber = FasterWhisperTranscriber(asr_model)
    key = content_key("transcribe-v1", vocals_key, transcriber.identity(), source_lang)
    log = stage_logger()
    if is_fresh(out_json, key):
        transcript = Transcript.from_json(read_json(out_json))
        log.info("transcript cached segments=%d", len(transcript.segments))
        return transcript, key
    progress = StageProgress("transcribe", 1.0, unit="s")
    transcript = transcriber.transcribe(
        vocals, source_lang, progress=lambda done, total: progress.set(done, total)
    )
    progress.set(progress.total)
    release_gpu_models(load_model.cache_clear, device=transcriber.device)  # before the next stage loads
    if not any(seg.words for seg in transcript.segments):
        raise InputError("no speech found in the audio: there is nothing to dub")
    write_json_atomic(out_json, transcript.to_json())
    mark_fresh(out_json, key)
    log.info(
        "transcribed model=%s language=%s probability=%.2f segments=%d",
        transcript.model, transcript.language, transcript.language_probability, len(transcript.segments),
    )  # fmt: skip
    return transcript, key
