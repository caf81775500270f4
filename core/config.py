"""The one typed, validated configuration of a dubbing job: the single source of every option.

Every layer builds and types with `DubConfig`: the command line (flows/cli.py derives its parser, --help and
the README options table from the fields: names, defaults, constraints, descriptions and each field's
`cli(...)` metadata), the Prefect UI's run form and deployments (the flow's one parameter), the checks
(core/checks.py) and the pipeline. Adding an option is adding a field here, with a description and, when
its flag is not `--field-name` or it is an advanced option, `json_schema_extra=cli(...)`.

It never holds secrets: the DashScope key is read from the environment by the adapters, so the config
can be stored as Prefect flow-run parameters and shown in the UI.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.errors import ConfigError
from core.languages import get_language
from models.registry import API  # the built-in engines register on import; config validates against them

if TYPE_CHECKING:  # pragma: no cover - typing only
    from pydantic_core import ErrorDetails

    from models.diarization import SpeakerHints

TTS_DEFAULT_MODEL = "qwen3-tts-flash-2025-11-27"
MT_DEFAULT_MODEL = "qwen-mt-flash"
CACHE_ENV = "QWENDUB_CACHE_DIR"
CLI_KEY = "cli"  # the json_schema_extra key of a field's command-line metadata (see `cli`)
# The ten languages as a Literal, so Prefect's UI renders `langs` as a multi-select of exactly these
LanguageCode = Literal["zh", "en", "de", "it", "pt", "es", "ja", "ko", "fr", "ru"]


CLONE_EVERY_LINE = "*"  # DubConfig.clone_speakers' key when one clone speaks every line (--clone SPEAKER_ID)
_CONSENT_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def parse_clone(value: str) -> dict[str, str]:
    """--clone's text as {plan speaker: consent speaker id}: `S2=guest,S3=host`, or `guest` alone for
    every line ({"*": "guest"}); a malformed value is one ConfigError line."""
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items:
        raise ConfigError("--clone: expected SPEAKER=CONSENT_ID,... or one CONSENT_ID")
    speakers: dict[str, str] = {}
    for item in items:
        speaker, sep, consent_id = (part.strip() for part in item.partition("="))
        if not sep:
            speaker, consent_id = CLONE_EVERY_LINE, speaker
        if not speaker or not consent_id:
            raise ConfigError(f"--clone: expected SPEAKER=CONSENT_ID, got {item!r}")
        if len(consent_id) > 64 or not set(consent_id) <= _CONSENT_ID_CHARS:
            raise ConfigError(f"--clone: invalid consent speaker id {consent_id!r} (1-64 of A-Z a-z 0-9 _ -)")
        if speaker in speakers:
            raise ConfigError(f"--clone names speaker {speaker if sep else consent_id} twice")
        speakers[speaker] = consent_id
    if CLONE_EVERY_LINE in speakers and len(speakers) > 1:
        raise ConfigError("--clone: give one CONSENT_ID (every line) or SPEAKER=CONSENT_ID pairs, not both")
    return speakers


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "qwen-dub"


def cli(
    flag: str | None = None,
    *,
    metavar: str | None = None,
    default: str | None = None,
    advanced: bool = False,
    positional: bool = False,
) -> dict[str, Any]:
    """A field's command-line face, kept on the field (`json_schema_extra=cli(...)`) so that an option is
    written once: flows/cli.py builds the parser, --help and the README options table from these.

    flag:       what users type; default `--` + the field name with dashes (`tts_batch` -> `--tts-batch`).
                A bool field is a switch: `--flag` sets True when its default is False; when its default
                is True the flag sets False (name it `--no-...`).
    metavar:    the value's placeholder in --help and the README (`N`, `DIR`); choices need none.
    default:    how --help and the README show the default when the field's own default says too little
                (None, a default factory, a default chosen at run time); backticks mark literal values.
    advanced:   listed after the common options: in --help, the README and the UI's run form
                (DubConfig declares its common fields first).
    positional: a positional argument (the video) instead of an option.
    The form schema Prefect's UI renders drops this metadata (see `_form_schema`).
    """
    spec: dict[str, Any] = {"advanced": advanced}
    for key, value in (("flag", flag), ("metavar", metavar), ("default", default)):
        if value is not None:
            spec[key] = value
    if positional:
        spec["positional"] = True
    return {CLI_KEY: spec}


def cli_spec(name: str) -> dict[str, Any]:
    """The `cli(...)` metadata of a DubConfig field ({} when it has none)."""
    extra = DubConfig.model_fields[name].json_schema_extra
    spec = extra.get(CLI_KEY) if isinstance(extra, dict) else None
    return dict(spec) if isinstance(spec, dict) else {}


def cli_flag(name: str) -> str:
    """The option a user types for a DubConfig field: `tts_rpm` -> `--rpm`, `video` -> `VIDEO`; any other
    name (not a field) is returned as it is."""
    if name not in DubConfig.model_fields:
        return name
    spec = cli_spec(name)
    if spec.get("positional"):
        return str(spec.get("metavar") or name.upper())
    return str(spec.get("flag") or "--" + name.replace("_", "-"))


def _form_schema(schema: dict[str, Any]) -> None:
    """DubConfig's JSON schema as Prefect's UI renders it (its run form): the command-line metadata
    dropped, every property given its `position` (common options first, then the advanced ones, each in
    declaration order; the UI sorts by it, and a server whose database reorders JSON keys keeps it),
    advanced options titled as such, a default the schema cannot show (None, a factory) spelled out in the
    description, and the engine choices read from the registry."""
    from models.registry import translator_names, tts_names

    properties: dict[str, Any] = schema.get("properties", {})
    names = list(DubConfig.model_fields)
    order = sorted(names, key=lambda name: bool(cli_spec(name).get("advanced")))
    for name, prop in properties.items():
        prop.pop(CLI_KEY, None)
        if name not in DubConfig.model_fields:
            continue
        spec = cli_spec(name)
        prop["position"] = order.index(name)
        if spec.get("advanced") and "title" in prop:
            prop["title"] = f"{prop['title']} (advanced)"
        shown = spec.get("default")
        if shown and prop.get("default") is None and "description" in prop:
            prop["description"] = f"{prop['description']} (default: {shown})"
    for name, choices in (("tts", tts_names()), ("translator", translator_names())):
        if name in properties:
            properties[name]["enum"] = choices


def _is_cast_file(value: object) -> bool:
    """--cast names a file (no `=`, and a .json name or an existing file) rather than SPEAKER=VOICE pairs."""
    if isinstance(value, Path):
        return True
    return (
        isinstance(value, str)
        and "=" not in value
        and (value.strip().endswith(".json") or Path(value).is_file())
    )


def _read_cast_file(path: Path, route: str) -> dict[str, str]:
    """A cast file's speaker -> voice: `{"S1": "Ethan"}`, or a cast.json (its `speakers`, each voice for
    the job's engine `route`; speakers without one are left to the job's casting)."""
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--cast: no file {path} (expected SPEAKER=VOICE,... or a JSON file)") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--cast: {path.name} cannot be read ({type(exc).__name__})") from None
    speakers = data.get("speakers") if isinstance(data, dict) else None
    if isinstance(speakers, dict):  # a cast.json
        data = {
            speaker: entry["voices"][route]
            for speaker, entry in speakers.items()
            if isinstance(entry, dict)
            and isinstance(entry.get("voices"), dict)
            and entry["voices"].get(route)
        }
    if not isinstance(data, dict) or not all(isinstance(v, str) and v.strip() for v in data.values()):
        raise ConfigError(f'--cast: {path.name}: expected {{"SPEAKER": "VOICE", ...}} or a cast.json')
    return {str(k).strip(): v.strip() for k, v in data.items()}


class DubConfig(BaseModel):
    """One dubbing job: the video, its target languages and how to dub them."""

    # Fields: the common options first, then the advanced ones (`cli(advanced=True)`). A description is
    # the option's help everywhere (--help, the README table, the UI form): plain text, `backticks` for
    # literal values, and no angle brackets outside backticks (the UI renders descriptions as Markdown,
    # where `<video name>` would be an HTML tag and vanish).
    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_form_schema)

    # -- common options ---------------------------------------------------------------------------------
    video: Path = Field(
        description="input video file", json_schema_extra=cli(positional=True, metavar="VIDEO")
    )
    langs: list[LanguageCode] = Field(
        description="target languages, comma-separated, from `zh,en,de,it,pt,es,ja,ko,fr,ru` "
        "(codes or English names)",
        min_length=1,
        json_schema_extra={"uniqueItems": True, **cli(metavar="LANGS")},
    )
    out: Path | None = Field(
        default=None,
        description="job folder: the dubbed video, subtitles, line plans and report",
        json_schema_extra=cli(metavar="DIR", default="`out/<video name>/`"),
    )
    voice: str | None = Field(
        default=None,
        description="TTS voice of every speaker, checked against the engine's catalogue (`--list-voices "
        "[--tts local]`; close matches are suggested); not given: each speaker is cast a voice fitting "
        "their estimated sex, a different one each (cast.json)",
        json_schema_extra=cli(metavar="NAME", default="cast automatically"),
    )
    cast: dict[str, str] = Field(
        default_factory=dict,
        description="a voice per speaker, e.g. `S1=Ethan,S2=Cherry` (speakers as named in segments.json), "
        'or a JSON file: `{"S1": "Ethan"}` or another job\'s cast.json',
        json_schema_extra=cli(metavar="SPEAKER=VOICE,...|FILE", default="`--voice`, else cast.json"),
    )
    tts: str = Field(
        default=API,
        description="TTS engine: `api` (DashScope Qwen TTS) or `local` (the open-source qwen-tts on this "
        "machine)",
        json_schema_extra=cli(),  # choices: the registry's engines (models/registry.py)
    )
    translator: str = Field(
        default=API,
        description="translation engine: `api` (Qwen-MT through DashScope) or `local` (a transformers chat "
        "model)",
        json_schema_extra=cli(),
    )
    source_lang: str | None = Field(
        default=None,
        description="language of the video (code or English name)",
        json_schema_extra=cli(metavar="CODE", default="detected"),
    )
    instructions: str | None = Field(
        default=None,
        max_length=2000,
        description="speaking direction (speed, emotion, tone): instruct API models, or the 1.7B local "
        "CustomVoice model",
        json_schema_extra=cli(metavar="TEXT"),
    )
    segments: Path | None = Field(
        default=None,
        description="start from an existing segments.json (skips recognition)",
        json_schema_extra=cli(metavar="FILE"),
    )
    subtitles: Path | None = Field(
        default=None,
        description="seed the line plan from an .srt or .vtt (skips recognition)",
        json_schema_extra=cli(metavar="FILE"),
    )
    glossary: Path | None = Field(
        default=None,
        description="terms translated a fixed way: CSV `source,target,language` (empty language: every "
        'target) or JSON `{"ja": {"lighthouse": "灯台"}, "*": {...}}`; sent to Qwen-MT as '
        "translation_options.terms and into the local model's prompt; lines missing a term are logged",
        json_schema_extra=cli(metavar="FILE"),
    )
    cast_registry: Path | None = Field(
        default=None,
        description="a folder of registered people (voice print and voice; `python -m flows.cast`): a "
        "speaker whose voice matches one speaks with that person's voice, so a series keeps its voices",
        json_schema_extra=cli(metavar="DIR"),
    )
    speakers: int | None = Field(
        default=None,
        ge=1,
        le=32,
        description="how many people speak (default: counted from the audio)",
        json_schema_extra=cli(metavar="N"),
    )
    min_speakers: int | None = Field(
        default=None,
        ge=1,
        le=32,
        description="at least this many speakers",
        json_schema_extra=cli(metavar="N"),
    )
    max_speakers: int | None = Field(
        default=None,
        ge=1,
        le=32,
        description="at most this many speakers",
        json_schema_extra=cli(metavar="N"),
    )
    diarizer: Literal["embedding", "pyannote", "none"] = Field(
        default="embedding",
        description="who speaks when: `embedding` (resemblyzer voice prints, offline), `pyannote` (needs "
        "the extra and --diarization-pipeline), `none` (one speaker)",
        json_schema_extra=cli(),
    )
    diarization_pipeline: str | None = Field(
        default=None,
        description="pyannote pipeline: a local folder or a hub id (token from HF_TOKEN)",
        json_schema_extra=cli(metavar="DIR_OR_ID"),
    )
    separator: Literal["htdemucs", "none"] = Field(
        default="htdemucs",
        description="source separation; `none` dubs over silence (the original track stays in the file)",
        json_schema_extra=cli(),
    )
    container: Literal["mkv", "mp4"] = Field(
        default="mkv",
        description="output container (subtitles as SRT in MKV, mov_text in MP4)",
        json_schema_extra=cli(),
    )
    split_outputs: bool = Field(
        default=False,
        description="also one video per language (video, original audio, that dub, its subtitles) and the "
        "dub stems as 24-bit WAV",
        json_schema_extra=cli(),
    )
    subtitle_speakers: bool = Field(
        default=False,
        description="label subtitles with their speaker (cast.json `name`, else the speaker as in "
        "segments.json): `S1: ...` in SRT when the speaker changes, a voice span in WebVTT",
        json_schema_extra=cli(),
    )
    dry_run: bool = Field(
        default=False,
        description="transcribe and plan, then report the estimated characters and cost per language "
        "(estimate.json); no paid call",
        json_schema_extra=cli(),
    )
    adopt_proposal: bool = Field(
        default=False,
        description="take the new plan where your edited segments.json or lines.LANG.json was kept "
        "against changed inputs (segments.proposed.json, lines.LANG.proposed.json); yours is kept as "
        "*.replaced.json",
        json_schema_extra=cli(),
    )
    budget: float | None = Field(
        default=None,
        gt=0,
        description="refuse the job (before any paid call) when the estimated TTS cost exceeds this, in the "
        "region's currency",
        json_schema_extra=cli(metavar="AMOUNT"),
    )
    verify: bool = Field(
        default=False,
        description="re-transcribe each dub track with the ASR model and report the error rate per line "
        "(WER; CER for zh/ja/ko) in report.json; needs a multilingual model for non-English tracks",
        json_schema_extra=cli(),
    )
    clone: str | None = Field(
        default=None,
        description="clone consented voices: `S2=guest,S3=host` speaks each plan speaker's lines with the "
        "voice of that consent record; `guest` alone: every line (README: Voice cloning, with consent)",
        json_schema_extra=cli(metavar="SPEAKER=CONSENT_ID,..."),
    )
    consent_dir: Path | None = Field(
        default=None,
        description="the consent ledger folder (`python -m cloning.cli`)",
        json_schema_extra=cli(metavar="DIR"),
    )
    clone_use: str | None = Field(
        default=None,
        description="the use this job makes of the cloned voice, as consented, e.g. 'dubbing of channel X'",
        json_schema_extra=cli(metavar="TEXT"),
    )
    clone_ref: Path | None = Field(
        default=None,
        description="reference recording of the cloned speaker",
        json_schema_extra=cli(metavar="FILE", default="chosen from the vocals"),
    )
    clone_ref_text: str | None = Field(
        default=None,
        description="transcript of the reference recording",
        json_schema_extra=cli(metavar="TEXT", default="from the line plan"),
        exclude=True,  # personal data: never serialised into a flow run's parameters (the run's history)
    )

    # -- advanced options -------------------------------------------------------------------------------
    # DashScope
    region: Literal["intl", "cn"] = Field(
        default="intl",
        description="DashScope region: International (Singapore) or Mainland China (Beijing); keys are per "
        "region",
        json_schema_extra=cli(advanced=True),
    )
    tts_model: str = Field(
        default=TTS_DEFAULT_MODEL,
        description="DashScope TTS snapshot (`qwen3-tts-instruct-flash-2026-01-26`, "
        "`qwen3-tts-flash-2025-09-18`, ...)",
        json_schema_extra=cli(metavar="NAME", advanced=True),
    )
    mt_model: str = Field(
        default=MT_DEFAULT_MODEL,
        description="Qwen-MT model (`qwen-mt-plus`, `qwen-mt-lite`, `qwen-mt-turbo`)",
        json_schema_extra=cli(metavar="NAME", advanced=True),
    )
    mt_domain: str | None = Field(
        default=None,
        max_length=500,
        description="Qwen-MT style hint in English (translation_options.domains), e.g. "
        "'Cooking show, informal'",
        json_schema_extra=cli(metavar="TEXT", default="dubbing dialogue", advanced=True),
    )
    stream: bool = Field(
        default=False,
        description="take TTS audio from the SSE stream (base64 PCM) instead of downloading the result URL",
        json_schema_extra=cli(advanced=True),
    )
    tts_rpm: int = Field(
        default=180,
        ge=1,
        description="TTS requests per minute (the flash models' documented limit), shared by all languages",
        json_schema_extra=cli("--rpm", metavar="N", advanced=True),
    )
    mt_rpm: int = Field(
        default=60,
        ge=1,
        description="Qwen-MT (and shortening) requests per minute",
        json_schema_extra=cli(metavar="N", advanced=True),
    )
    concurrency: int = Field(
        default=8,
        ge=1,
        le=64,
        description="parallel API requests",
        json_schema_extra=cli(metavar="N", advanced=True),
    )
    retry_attempts: int = Field(
        default=6,
        ge=1,
        le=20,
        description="attempts per API request on transient errors (429, 5xx, timeouts; exponential backoff "
        "with jitter, Retry-After honoured); a 400 is never retried",
        json_schema_extra=cli("--retries", metavar="N", advanced=True),
    )
    retry_base_delay_s: float = Field(
        default=1.0,
        ge=0.0,
        le=60.0,
        description="first backoff delay between attempts, in seconds (doubles each retry)",
        json_schema_extra=cli("--retry-delay", metavar="SECONDS", advanced=True),
    )
    # local engines
    translator_model: str | None = Field(
        default=None,
        description="local translator: Hugging Face id or directory",
        json_schema_extra=cli(
            metavar="NAME_OR_DIR",
            default="`Qwen/Qwen2.5-7B-Instruct` on GPU, `Qwen/Qwen2.5-1.5B-Instruct` on CPU",
            advanced=True,
        ),
    )
    tts_local_model: str | None = Field(
        default=None,
        description="local TTS checkpoint: Hugging Face id or directory",
        json_schema_extra=cli(
            metavar="NAME_OR_DIR", default="`Qwen/Qwen3-TTS-12Hz-<size>-CustomVoice`", advanced=True
        ),
    )
    tts_size: Literal["1.7B", "0.6B"] = Field(
        default="1.7B", description="local TTS model size", json_schema_extra=cli(advanced=True)
    )
    voice_design: str | None = Field(
        default=None,
        max_length=2000,
        description="local TTS: design the voice from this description (1.7B VoiceDesign)",
        json_schema_extra=cli(metavar="TEXT", advanced=True),
    )
    tts_batch: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="local TTS: most lines per generate call (one voice, similar lengths together); default: "
        "as many as the GPU's free memory holds (up to 128), 8 on a CPU",
        json_schema_extra=cli(metavar="N", advanced=True, default="as many as fit the GPU; 8 on a CPU"),
    )
    # recognition and separation
    asr_model: str = Field(
        default="auto",
        description="faster-whisper model name (`small`, `large-v3`, ...) or a CTranslate2 directory; "
        "`auto`: `large-v3` on GPU, `small` on CPU",
        json_schema_extra=cli(metavar="NAME_OR_DIR", advanced=True),
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="where the local models run", json_schema_extra=cli(advanced=True)
    )
    demucs_model: str = Field(
        default="htdemucs",
        description="demucs model: `htdemucs`, `htdemucs_ft`, `mdx_extra`, or a folder holding one model",
        json_schema_extra=cli(metavar="NAME_OR_DIR", advanced=True),
    )
    demucs_dir: Path | None = Field(
        default=None,
        description="folder of local demucs models (`name.th` / `name.yaml`)",
        json_schema_extra=cli("--demucs-repo", metavar="DIR", advanced=True),
    )
    demucs_shifts: int = Field(
        default=1,
        ge=0,
        le=20,
        description="demucs random shifts (quality against time)",
        json_schema_extra=cli("--shifts", metavar="N", advanced=True),
    )
    demucs_overlap: float = Field(
        default=0.25,
        ge=0.0,
        lt=1.0,
        description="demucs segment overlap",
        json_schema_extra=cli("--overlap", metavar="X", advanced=True),
    )
    demucs_chunk_s: float = Field(
        default=60.0,
        gt=0,
        description="separate in chunks of this many seconds: memory stays flat on a two-hour film (output "
        "identical to one pass)",
        json_schema_extra=cli("--separation-chunk", metavar="SECONDS", advanced=True),
    )
    # fitting and mixing
    max_speedup: float = Field(
        default=1.25,
        ge=1.0,
        le=2.0,
        description="cap on the time-stretch speed-up",
        json_schema_extra=cli(metavar="X", advanced=True),
    )
    shorten: bool = Field(
        default=True,
        description="re-translate shorter the lines whose dub needs more speed-up than the cap; a line not "
        "shortened is stretched to the cap and faded at the slot end",
        json_schema_extra=cli("--no-shorten", advanced=True),
    )
    shorten_model: str | None = Field(
        default=None,
        description="DashScope chat model that rewrites over-long lines (the local route re-translates with "
        "the local model)",
        json_schema_extra=cli(metavar="NAME", default="`qwen-flash`", advanced=True),
    )
    duck_db: float = Field(
        default=0.0,
        ge=0.0,
        le=30.0,
        description="lower the background by this many dB under dialogue (sidechain, 50 ms attack, 350 ms "
        "release; 0: off)",
        json_schema_extra=cli("--duck", metavar="DB", advanced=True),
    )
    audio_codec: Literal["aac", "opus"] = Field(
        default="aac", description="codec of the dubbed tracks", json_schema_extra=cli(advanced=True)
    )
    verify_threshold: float = Field(
        default=0.3,
        gt=0,
        le=1,
        description="with verification: flag lines whose error rate is above this",
        json_schema_extra=cli(metavar="X", advanced=True),
    )
    cache_dir: Path = Field(
        default_factory=default_cache_dir,
        description="clip and translation cache, shared by jobs",
        json_schema_extra=cli(metavar="DIR", default=f"`~/.cache/qwen-dub` or `${CACHE_ENV}`", advanced=True),
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

    @field_validator("cast_registry")
    @classmethod
    def _registry_folder(cls, value: Path | None) -> Path | None:
        """The registry must exist (its entries are read, and checked, by the cast stage and preflight)."""
        if value is not None and not value.expanduser().is_dir():
            raise ConfigError(f"--cast-registry {value}: not a folder (`python -m flows.cast add` makes one)")
        return None if value is None else value.expanduser()

    @field_validator("source_lang")
    @classmethod
    def _known_source(cls, value: str | None) -> str | None:
        return None if value in (None, "", "auto") else get_language(value).code

    @field_validator("clone", mode="before")
    @classmethod
    def _parse_clone(cls, value: object) -> object:
        """`guest` or `S2=guest, S3=host` (or a mapping) -> its canonical text (`S2=guest,S3=host`)."""
        if value is None or value == "" or value == {}:
            return None
        if isinstance(value, Mapping):
            value = ",".join(f"{k}={v}" for k, v in value.items())
        if not isinstance(value, str):
            return value
        return ",".join(f"{k}={v}" if k != CLONE_EVERY_LINE else v for k, v in parse_clone(value).items())

    @property
    def clone_speakers(self) -> dict[str, str]:
        """--clone as {plan speaker: consent speaker id}; {"*": id} when one clone speaks every line."""
        return parse_clone(self.clone) if self.clone else {}

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
        if self.clone_ref and len(self.clone_speakers) > 1:
            raise ConfigError("--clone-ref gives one reference: clone one speaker with it, not several")
        return self

    @model_validator(mode="before")
    @classmethod
    def _default_voice(cls, values: object) -> object:
        """No --voice: `voice` stays None and every speaker is cast (tasks/cast.py: a voice fitting their
        estimated sex; the engine's default voice where there is no speech to measure). `--cast FILE` is
        read here, where the engine is known: a cast.json holds a voice per engine."""
        if isinstance(values, dict) and _is_cast_file(values.get("cast")):
            values = {
                **values,
                "cast": _read_cast_file(Path(str(values["cast"])), str(values.get("tts") or API)),
            }
        return values

    @model_validator(mode="after")
    def _check_plan_sources(self) -> DubConfig:
        self.speaker_hints()  # contradicting hints fail here, naming the flags
        if self.diarizer == "pyannote" and not self.diarization_pipeline:
            raise ConfigError("--diarizer pyannote needs --diarization-pipeline DIR_OR_ID")
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
            speakers = self.clone_speakers
            if CLONE_EVERY_LINE in speakers:
                if self.cast:
                    raise ConfigError(
                        "--cast cannot be combined with --clone SPEAKER_ID (one cloned voice speaks every "
                        "line; clone per speaker with --clone S2=SPEAKER_ID)"
                    )
                return self
            both = sorted(set(speakers) & set(self.cast))
            if both:
                raise ConfigError(f"--cast and --clone both give a voice to speaker {both[0]}")
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

    def speaker_hints(self) -> SpeakerHints:
        """What the user knows about the number of speakers, for the diarizer."""
        from models.diarization import SpeakerHints

        try:
            return SpeakerHints.of(self.speakers, self.min_speakers, self.max_speakers)
        except ConfigError as exc:
            message = str(exc)
            for field in ("num_speakers", "min_speakers", "max_speakers"):
                flag = "--speakers" if field == "num_speakers" else "--" + field.replace("_", "-")
                message = message.replace(field, flag)
            raise ConfigError(message) from None

    @property
    def name(self) -> str:
        return self.video.stem

    @property
    def out_dir(self) -> Path:
        return self.out if self.out is not None else Path("out") / self.name


def build_config(**values: object) -> DubConfig:
    """Build a config from field values; a bad value is one ConfigError line naming the field."""
    return validate_config(values)


def validate_config(values: Mapping[str, object], *, name: Callable[[str], str] = str) -> DubConfig:
    """Build a config, turning pydantic's multi-line report into one line a user can act on, naming the
    option as `name(field)` puts it: the field itself for the UI and deployments, the flag for the CLI
    (`validate_config(values, name=cli_flag)`: "--rpm: must be ≥ 1")."""
    from pydantic import ValidationError

    try:
        return DubConfig(**values)  # type: ignore[arg-type]
    except ConfigError:
        raise
    except ValidationError as exc:
        err = exc.errors()[0]
        inner = (err.get("ctx") or {}).get("error")
        if isinstance(inner, ConfigError):
            raise inner from None
        loc = err.get("loc", ())
        where = name(str(loc[0])) if loc else "config"
        raise ConfigError(f"{where}: {_problem(err)}") from None


def _problem(err: ErrorDetails) -> str:
    """What is wrong with one value, in a few words."""
    ctx, kind, value = err.get("ctx") or {}, err["type"], err.get("input")
    bounds = {"greater_than_equal": ("≥", "ge"), "greater_than": (">", "gt"),
              "less_than_equal": ("≤", "le"), "less_than": ("<", "lt")}  # fmt: skip
    if kind in bounds:
        sign, key = bounds[kind]
        return f"must be {sign} {ctx.get(key)}, not {value}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"expected a whole number, not {value!r}"
    if kind in ("float_parsing", "float_type"):
        return f"expected a number, not {value!r}"
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}, not {value!r}"
    if kind == "string_too_long":
        return f"at most {ctx.get('max_length')} characters"
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown option"
    message = str(err.get("msg") or "bad value")
    return message[:1].lower() + message[1:]
