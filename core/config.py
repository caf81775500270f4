"""The one typed, validated configuration of a dubbing job (the CLI and Prefect both build it).

It never holds secrets: the DashScope key is read from the environment by the adapters, so the config
can be stored as Prefect flow-run parameters and shown in the UI.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.errors import ConfigError
from core.languages import get_language

TTS_DEFAULT_MODEL = "qwen3-tts-flash-2025-11-27"
MT_DEFAULT_MODEL = "qwen-mt-flash"
CACHE_ENV = "QWENDUB_CACHE_DIR"
# The ten languages as a Literal, so Prefect's UI renders `langs` as a multi-select of exactly these
LanguageCode = Literal["zh", "en", "de", "it", "pt", "es", "ja", "ko", "fr", "ru"]


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "qwen-dub"


class DubConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    video: Path = Field(description="Input video file")
    langs: list[LanguageCode] = Field(
        description="Target languages (ISO 639-1): zh, en, de, it, pt, es, ja, ko, fr, ru",
        min_length=1,
        json_schema_extra={"uniqueItems": True},
    )
    out: Path | None = Field(default=None, description="Output folder (default out/<video name>/)")
    voice: str | None = Field(
        default=None, description="TTS voice (see --list-voices); default Cherry (api) or Vivian (local)"
    )
    tts: str = Field(
        default="api",
        description="TTS engine: api (DashScope Qwen TTS) or local (qwen-tts on this machine)",
        json_schema_extra={"enum": ["api", "local"]},
    )
    translator: str = Field(
        default="api",
        description="Translation engine: api (Qwen-MT) or local (a transformers LLM)",
        json_schema_extra={"enum": ["api", "local"]},
    )
    cast: dict[str, str] = Field(
        default_factory=dict,
        description="Voice per speaker, e.g. S1=Ethan,S2=Cherry (speakers as named in segments.json)",
    )
    asr_model: str = Field(default="auto", description="faster-whisper model name or CTranslate2 directory")
    separator: Literal["htdemucs", "none"] = "htdemucs"
    demucs_model: str = Field(
        default="htdemucs", description="demucs model name (htdemucs, htdemucs_ft, mdx_extra)"
    )
    demucs_dir: Path | None = Field(
        default=None, description="Folder holding local demucs models (.th/.yaml)"
    )
    demucs_shifts: int = Field(default=1, ge=0, le=20)
    demucs_overlap: float = Field(default=0.25, ge=0.0, lt=1.0)
    demucs_chunk_s: float = Field(default=60.0, gt=0, description="Separation chunk length (bounds memory)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    region: Literal["intl", "cn"] = "intl"
    source_lang: str | None = Field(default=None, description="Source language; detected when omitted")
    tts_model: str = TTS_DEFAULT_MODEL
    mt_model: str = MT_DEFAULT_MODEL
    tts_local_model: str | None = Field(
        default=None,
        description="Local TTS: Hugging Face id or directory (default Qwen3-TTS 12Hz checkpoints)",
    )
    tts_size: Literal["1.7B", "0.6B"] = Field(default="1.7B", description="Local TTS model size")
    voice_design: str | None = Field(
        default=None, max_length=2000, description="Local TTS: design a voice from this description"
    )
    tts_batch: int = Field(default=8, ge=1, le=64, description="Local TTS: lines per generate call")
    clone: str | None = Field(default=None, description="Clone this consented speaker's voice (speaker id)")
    consent_dir: Path | None = Field(
        default=None, description="Consent ledger folder (python -m cloning.cli)"
    )
    clone_use: str | None = Field(
        default=None, description="The use consented to, e.g. 'dubbing of channel X'"
    )
    clone_ref: Path | None = Field(
        default=None, description="Reference recording (default: chosen from the vocals)"
    )
    clone_ref_text: str | None = Field(default=None, description="Transcript of --clone-ref")
    glossary: Path | None = Field(default=None, description="Glossary CSV/JSON: terms translated a fixed way")
    mt_domain: str | None = Field(
        default=None,
        max_length=500,
        description="Qwen-MT style hint in English, e.g. 'Cooking show, informal' (default: dubbing)",
    )
    translator_model: str | None = Field(
        default=None, description="Local translator: Hugging Face id or directory (default by device)"
    )
    stream: bool = Field(default=False, description="Take TTS audio from the SSE stream instead of the URL")
    tts_rpm: int = Field(default=180, ge=1, description="DashScope TTS requests per minute (account limit)")
    mt_rpm: int = Field(default=60, ge=1, description="Qwen-MT requests per minute")
    concurrency: int = Field(default=8, ge=1, le=64, description="Parallel API requests")
    max_speedup: float = Field(default=1.25, ge=1.0, le=2.0)
    shorten: bool = Field(
        default=True, description="Re-translate lines whose dub needs more than max_speedup"
    )
    shorten_model: str | None = Field(
        default=None, description="DashScope chat model for shortening (qwen-flash)"
    )
    audio_codec: Literal["aac", "opus"] = "aac"
    container: Literal["mkv", "mp4"] = "mkv"
    duck_db: float = Field(
        default=0.0, ge=0.0, le=30.0, description="Lower the background this much under dialogue"
    )
    split_outputs: bool = Field(
        default=False, description="Also one video per language, and the dub WAV stems"
    )
    cache_dir: Path = Field(default_factory=default_cache_dir)
    retry_attempts: int = Field(
        default=6,
        ge=1,
        le=20,
        description="Attempts per API request on transient errors (429, 5xx, timeouts)",
    )
    retry_base_delay_s: float = Field(default=1.0, ge=0.0, le=60.0)
    instructions: str | None = Field(
        default=None,
        max_length=2000,
        description="Speaking direction for instruct TTS models (speed, emotion)",
    )
    segments: Path | None = Field(
        default=None, description="Start from this segments.json (skips recognition)"
    )
    subtitles: Path | None = Field(
        default=None, description="Seed the plan from this .srt/.vtt (skips recognition)"
    )
    verify: bool = Field(default=False, description="Re-transcribe each dub track and report WER per line")
    verify_threshold: float = Field(default=0.3, gt=0, le=1, description="Flag lines above this WER/CER")
    dry_run: bool = Field(
        default=False, description="Estimate characters and cost, then stop before any paid call"
    )
    budget: float | None = Field(
        default=None, gt=0, description="Refuse a job whose estimated TTS cost exceeds this"
    )

    @field_validator("langs", mode="before")
    @classmethod
    def _known_langs(cls, value: object) -> object:
        """ "ja,EN, Korean" or a list -> ["ja", "en", "ko"]: codes or English names, order kept, repeats
        dropped, unknown ones refused (one line naming them)."""
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            return value
        codes: list[str] = []
        for item in items:
            text = str(item).strip()
            if text and (code := get_language(text).code) not in codes:
                codes.append(code)
        if not codes:
            raise ValueError("give at least one target language")
        return codes

    @field_validator("tts")
    @classmethod
    def _known_tts(cls, value: str) -> str:
        from models.registry import tts_engine

        return tts_engine(value).name

    @field_validator("translator")
    @classmethod
    def _known_translator(cls, value: str) -> str:
        from models.registry import translator_engine

        return translator_engine(value).name

    @field_validator("cast", mode="before")
    @classmethod
    def _parse_cast(cls, value: object) -> object:
        """ "S1=Ethan, S2=Cherry" or a mapping -> {"S1": "Ethan", "S2": "Cherry"}."""
        if not isinstance(value, str):
            return value
        cast: dict[str, str] = {}
        for item in value.split(","):
            if not item.strip():
                continue
            speaker, sep, voice = item.partition("=")
            if not sep or not speaker.strip() or not voice.strip():
                raise ConfigError(f"--cast: expected SPEAKER=VOICE, got {item.strip()!r}")
            cast[speaker.strip()] = voice.strip()
        return cast

    @field_validator("source_lang")
    @classmethod
    def _known_source(cls, value: str | None) -> str | None:
        return None if value in (None, "", "auto") else get_language(value).code

    @model_validator(mode="after")
    def _check_clone(self) -> DubConfig:
        if self.clone is None:
            if self.clone_ref or self.consent_dir or self.clone_use:
                raise ConfigError(
                    "--consent-dir, --clone-use and --clone-ref only make sense with --clone SPEAKER"
                )
            return self
        if self.consent_dir is None or not self.clone_use:
            raise ConfigError("--clone needs --consent-dir DIR and --clone-use TEXT (the use consented to)")
        if self.voice_design or self.instructions:
            raise ConfigError("--clone cannot be combined with --voice-design or --instructions")
        if self.clone_ref_text and not self.clone_ref:
            raise ConfigError("--clone-ref-text needs --clone-ref FILE")
        return self

    @model_validator(mode="before")
    @classmethod
    def _default_voice(cls, values: object) -> object:
        if isinstance(values, dict) and values.get("clone"):
            return values  # the voice is the consented speaker's clone
        if isinstance(values, dict) and not values.get("voice") and not values.get("voice_design"):
            from models.registry import tts_engine

            try:
                default = tts_engine(str(values.get("tts") or "api")).default_voice
            except ConfigError:
                return values  # the tts validator names the unknown engine
            values = {**values, "voice": default}
        return values

    @model_validator(mode="after")
    def _check_plan_sources(self) -> DubConfig:
        if self.segments is not None and self.subtitles is not None:
            raise ConfigError("give either --segments or --subtitles, not both")
        if self.subtitles is not None and self.subtitles.suffix.lower() not in (".srt", ".vtt"):
            raise ConfigError(f"--subtitles {self.subtitles.name}: expected a .srt or .vtt file")
        return self

    @model_validator(mode="after")
    def _check_voice(self) -> DubConfig:
        """The engine's own options, the job's voice and every voice of the cast, against the engine's
        catalogue (a cloned voice is in no catalogue)."""
        from models.registry import tts_engine

        engine = tts_engine(self.tts)
        if self.clone is not None:
            if engine.clone is None:
                raise ConfigError(f"--clone: the {self.tts} TTS engine cannot speak with a cloned voice")
            if self.cast:
                raise ConfigError("--cast cannot be combined with --clone (one cloned voice per job)")
            return self
        if engine.check is not None:
            engine.check(self)
        if self.voice_design is not None and self.cast:
            raise ConfigError("--cast cannot be combined with --voice-design (one designed voice per job)")
        if self.voice_design is None and self.voice:
            object.__setattr__(self, "voice", engine.resolve_voice(self, self.voice))
        if self.cast:
            resolved = {speaker: engine.resolve_voice(self, voice) for speaker, voice in self.cast.items()}
            object.__setattr__(self, "cast", resolved)
        return self

    @property
    def name(self) -> str:
        return self.video.stem

    @property
    def out_dir(self) -> Path:
        return self.out if self.out is not None else Path("out") / self.name


def build_config(**values: object) -> DubConfig:
    """Build a config, turning pydantic's multi-line report into one line a user can act on."""
    from pydantic import ValidationError

    try:
        return DubConfig(**values)  # type: ignore[arg-type]
    except ConfigError:
        raise
    except ValidationError as exc:
        err = exc.errors()[0]
        ctx = err.get("ctx") or {}
        inner = ctx.get("error")
        if isinstance(inner, ConfigError):
            raise inner from None
        where = ".".join(str(p) for p in err.get("loc", ())) or "config"
        raise ConfigError(f"invalid {where}: {err.get('msg', 'bad value')}") from None
