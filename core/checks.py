"""The checks every job passes before any work starts, wherever it was started (the CLI, the Prefect UI,
a deployment, run_deployment): options, engines, key, consent, input, output folder. Each failure is one
DubError whose message is the line the user sees. The checks run cheapest first, and nothing here calls a
paid API; the one model loaded here (demucs, to fail early on an offline machine) loads last, so a
missing key, an unknown voice or a missing video fails before any model loads."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from core.config import DubConfig, build_config
from core.errors import InputError


def preflight(
    config: DubConfig | Mapping[str, Any], before_loads: Callable[[], None] | None = None
) -> DubConfig:
    """Everything that can be known before work starts; returns the validated config (a deployment run's
    `config` arrives as JSON, validated here so that a bad value fails with its one line too).
    `before_loads`: the caller's own cheap checks (the CLI's: Prefect's home and database), run after
    these and before the first model load."""
    if not isinstance(config, DubConfig):
        config = build_config(**config)  # options: languages, engines, voices, values in range
    from models.dashscope_common import api_key_from_env
    from models.registry import translator_engine, tts_engine
    from models.whisper_asr import resolve_model_name
    from tasks.media import probe_media, require_tool

    tts, translator = tts_engine(config.tts), translator_engine(config.translator)
    if tts.check is not None and config.clone is None:
        tts.check(config)  # validates voice, size and model folder; loads nothing
    if translator.check is not None:
        translator.check(config)  # validates the model id or directory; loads nothing
    check_separation(config)  # the options and the model's files; loads nothing
    asr = resolve_model_name(config.asr_model)
    if config.verify:
        from tasks.verify import require_model_for

        for code in config.langs:
            require_model_for(asr, code)
    require_tool("ffmpeg")
    if (tts.needs_key or translator.needs_key) and not config.dry_run:
        api_key_from_env()
    if config.clone is not None:
        # consent first: no model, no API call, no output folder for a clone without valid consent
        from cloning.session import CloneSession

        CloneSession.open(config)
    probe_media(config.video)  # before the output folder: a mistyped video name creates no folder
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
    out = config.out_dir
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe_file = out / ".write-test"
        probe_file.write_bytes(b"")
        probe_file.unlink()
    except OSError as exc:
        raise InputError(f"cannot write to output folder {out}: {exc.strerror or exc}") from None
    if before_loads is not None:
        before_loads()
    # last, the one load: demucs (downloaded on first use), so an offline machine fails before any work;
    # the loaded model stays cached in the process for the separation stage
    check_separation(config, load=True)
    return config


def check_separation(config: DubConfig, load: bool = False) -> None:
    from tasks.separate import check_separator

    check_separator(
        config.separator, model=config.demucs_model, model_dir=config.demucs_dir, device=config.device,
        shifts=config.demucs_shifts, overlap=config.demucs_overlap, chunk_seconds=config.demucs_chunk_s,
        load=load,
    )  # fmt: skip
