"""The checks every job passes before any work starts, wherever it was started (the CLI, the Prefect UI,
a deployment, run_deployment): input, engines, key, consent, output folder. Each failure is one DubError
whose message is the line the user sees; nothing here loads a model or calls a paid API."""

from __future__ import annotations

from core.config import DubConfig
from core.errors import InputError


def preflight(config: DubConfig) -> None:
    """Everything that can be known before work starts: input, routes, key, output folder."""
    from models.dashscope_common import api_key_from_env
    from models.whisper_asr import resolve_model_name
    from tasks.media import probe_media, require_tool
    from tasks.separate import check_separator

    require_tool("ffmpeg")
    if config.clone is not None:
        # consent first: no model, no API call, no output folder for a clone without valid consent
        from cloning.session import CloneSession

        CloneSession.open(config)
    probe_media(config.video)
    check_separator(
        config.separator, model=config.demucs_model, model_dir=config.demucs_dir, device=config.device,
        shifts=config.demucs_shifts, overlap=config.demucs_overlap, chunk_seconds=config.demucs_chunk_s,
        load=True,
    )  # fmt: skip
    for option, path in (("--segments", config.segments), ("--subtitles", config.subtitles)):
        if path is not None and not path.is_file():
            raise InputError(f"{option} file not found: {path}")
    if config.glossary is not None:
        from text.glossary import load_glossary

        load_glossary(config.glossary)
    if config.segments is not None:
        from tasks.segment import load_plan

        load_plan(config.segments)  # a malformed plan fails here, naming the line
    if config.subtitles is not None:
        from tasks.segment import lines_from_subtitles

        lines_from_subtitles(config.subtitles)
    from models.registry import translator_engine, tts_engine

    tts, translator = tts_engine(config.tts), translator_engine(config.translator)
    if tts.check is not None and config.clone is None:
        tts.check(config)  # validates voice, size and model folder; loads nothing
    if translator.check is not None:
        translator.check(config)  # validates the model id or directory; loads nothing
    if (tts.needs_key or translator.needs_key) and not config.dry_run:
        api_key_from_env()
    asr = resolve_model_name(config.asr_model)
    if config.verify:
        from tasks.verify import require_model_for

        for code in config.langs:
            require_model_for(asr, code)
    out = config.out_dir
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe_file = out / ".write-test"
        probe_file.write_bytes(b"")
        probe_file.unlink()
    except OSError as exc:
        raise InputError(f"cannot write to output folder {out}: {exc.strerror or exc}") from None
