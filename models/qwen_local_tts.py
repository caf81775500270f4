"""Qwen3-TTS on this machine (the open-source `qwen-tts` package): the "local" TTS route.

Three modes, one per published checkpoint family:
- "custom_voice": the nine fixed CustomVoice speakers, with optional style instructions (1.7B only);
- "voice_design": a voice described in words (1.7B only; there is no 0.6B VoiceDesign);
- "base": voice cloning from a reference recording. The clone prompt (speech codes + speaker embedding)
  is computed once per reference, reused for every line, and saved on disk so another process reuses it.

A model loads once per process (`load_model`, an lru_cache keyed by model, device, dtype and attention)
and serves every line. `synthesize_batch` sends several lines through ONE generate_* call.

Guards against the package's known failure modes (shared docs qwen-reference.md, section 6):
- runaway output when EOS is missed: max_new_tokens is capped from the text length and the clip is cut
  at the same ceiling ("too_long");
- lost endings: a clip much shorter than its text can be spoken in is suspicious ("too_short");
- either one is regenerated with a new seed a bounded number of times, then kept and flagged in
  SynthesizedClip.extra["guard"]; a later run retries a flagged line (core/clip_cache.py GUARD_TRIES) with
  seeds no earlier run used for it (SpeechRequest.earlier_tries, see `_seed_for`);
- digits read in the wrong language: digits are spelled out in the target language with num2words when
  that package is installed (optional dependency; without it, digits are left as they are).
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import gc
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import logging
import math
import os
import random
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigError, InputError, UpstreamError
from core.languages import LANGUAGES, Language, is_wide
from models.base import SpeechRequest, SynthesizedClip
from models.registry import LOCAL

log = logging.getLogger(__name__)

SAMPLE_RATE = 24_000  # Hz: every Qwen3-TTS 12 Hz checkpoint decodes to 24 kHz mono
FRAME_RATE_HZ = 12.5  # codec frames per second (one talker token = one frame = 80 ms)
SAMPLES_PER_FRAME = 1920  # 24_000 / 12.5
MODES = ("custom_voice", "voice_design", "base")
SIZES = ("1.7B", "0.6B")
_MODEL_SUFFIX = {"custom_voice": "CustomVoice", "voice_design": "VoiceDesign", "base": "Base"}
# The nine published CustomVoice speakers (names are matched case-insensitively by the package).
SPEAKERS = ("Vivian", "Serena", "Uncle_Fu", "Dylan", "Eric", "Ryan", "Aiden", "Ono_Anna", "Sohee")
# Languages of the published checkpoints (lowercase, as get_supported_languages() lists them): exactly
# the project's ten dubbing languages.
QWEN_LANGUAGES = frozenset(lang.name.lower() for lang in LANGUAGES.values())
RETRY_SEED_STEP = 1_000_003  # round k of a call seeded with s uses s + k * step (see QwenLocalTTS._seed_for)
CLONE_PROMPT_FORMAT = 1  # bump when the on-disk layout of a saved clone prompt changes

# One generate call at a time per process: the seed is global torch state, and one accelerator runs one
# batch at a time anyway. The synthesis stage may call from several threads.
_GENERATE_LOCK = threading.Lock()
_LOAD_LOCK = threading.Lock()
_PROMPT_MEMO: dict[tuple[str, str], ClonePrompt] = {}


def default_model_id(mode: str, size: str = "1.7B") -> str:
    """The hub id of the published checkpoint for a mode and size."""
    if mode not in MODES:
        raise ConfigError(f"unknown local TTS mode {mode!r}; choose one of {', '.join(MODES)}")
    if size not in SIZES:
        raise ConfigError(f"unknown Qwen3-TTS size {size!r}; choose 1.7B or 0.6B")
    if mode == "voice_design" and size != "1.7B":
        raise ConfigError("voice design exists only as Qwen3-TTS 1.7B (there is no 0.6B VoiceDesign)")
    return f"Qwen/Qwen3-TTS-12Hz-{size}-{_MODEL_SUFFIX[mode]}"


def _speaker_key(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip()).lower()


def resolve_speaker(name: str, available: Sequence[str] = SPEAKERS) -> str:
    """Canonical speaker name ("ono anna", "Ono-Anna", "ONO_ANNA" -> "Ono_Anna"); ConfigError listing
    close matches for unknown names."""
    by_key = {_speaker_key(s): s for s in available}
    key = _speaker_key(name)
    if key in by_key:
        return by_key[key]
    close = [k for k in by_key if key and k.startswith(key)]  # "ono" -> Ono_Anna
    close += [k for k in difflib.get_close_matches(key, list(by_key), n=3, cutoff=0.6) if k not in close]
    hint = f"did you mean {', '.join(by_key[c] for c in close)}? " if close else ""
    raise ConfigError(f"unknown Qwen3-TTS speaker {name.strip()!r}; {hint}speakers: {', '.join(available)}")


# -- length guard --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LengthGuard:
    """How long a line may and must last, from its text (after number normalisation).

    Ceiling = headroom * max(min_ceiling_s, sum of per-character maxima); it sets max_new_tokens
    (12.5 frames per second) and cuts the clip, so a missed EOS costs at most the ceiling. The rates are
    deliberately those of SLOW speech, so a real line never reaches the ceiling:
    - 0.10 s per Latin/Cyrillic/other character (spaces excluded): 10 letters/s, about 110 words/min in
      English; conversational speech is 13-16 letters/s (150-180 words/min);
    - 0.30 s per CJK ideograph, kana or Hangul syllable (one syllable each): 3.3 syllables/s; Mandarin,
      Japanese and Korean are spoken at 4-8 syllables/s;
    - 0.30 s per digit left unspelt (a digit is at least one syllable in every language, "seven" two);
    - min_ceiling_s 3 s so that "Oh!" still has room for a breath; headroom 1.5 on top.
    Floor = sum of per-character minima at twice the fastest natural rate (0.03 s per Latin character,
    about 33/s; 0.08 s per syllable character or digit, 12.5/s): a clip under it has lost words, typically
    its ending. (The per-character rates are deliberately tighter than a flat 0.35 s / 0.6 s per
    character: at those, a 100-character line of about 7 s would be allowed to babble for 52 s.)
    """

    min_ceiling_s: float = 3.0
    headroom: float = 1.5
    max_s_per_char: float = 0.10
    max_s_per_wide_char: float = 0.30
    min_s_per_char: float = 0.03
    min_s_per_wide_char: float = 0.08

    def __post_init__(self) -> None:
        if min(self.min_ceiling_s, self.headroom, self.max_s_per_char, self.max_s_per_wide_char) <= 0:
            raise ConfigError("length guard ceilings must be positive")
        if self.min_s_per_char < 0 or self.min_s_per_wide_char < 0:
            raise ConfigError("length guard floors must not be negative")

    def _weights(self, text: str) -> tuple[int, int]:
        narrow = wide = 0
        for ch in text:
            if ch.isspace():
                continue
            if is_wide(ch) or ch.isdigit():
                wide += 1
            else:
                narrow += 1
        return narrow, wide

    def ceiling_s(self, text: str) -> float:
        narrow, wide = self._weights(text)
        spoken = narrow * self.max_s_per_char + wide * self.max_s_per_wide_char
        return self.headroom * max(self.min_ceiling_s, spoken)

    def floor_s(self, text: str) -> float:
        narrow, wide = self._weights(text)
        return narrow * self.min_s_per_char + wide * self.min_s_per_wide_char

    def ceiling_frames(self, text: str) -> int:
        return max(1, math.ceil(self.ceiling_s(text) * FRAME_RATE_HZ - 1e-9))  # 1.04 s * 12.5 is 13, not 14


@dataclass(frozen=True)
class GenerationParams:
    """Sampling parameters passed to every generate_* call (the package's published defaults).

    max_new_tokens, when set, is an extra hard cap below the length guard's own cap (tests, previews)."""

    do_sample: bool = True
    top_k: int = 50
    top_p: float = 1.0
    temperature: float = 0.9
    repetition_penalty: float = 1.05
    subtalker_dosample: bool = True
    subtalker_top_k: int = 50
    subtalker_top_p: float = 1.0
    subtalker_temperature: float = 0.9
    max_new_tokens: int | None = None

    def sampling_kwargs(self) -> dict[str, Any]:
        kwargs = asdict(self)
        kwargs.pop("max_new_tokens")
        return kwargs


# -- numbers -------------------------------------------------------------------------------------------

# num2words 0.5.14 converters for our languages; Chinese has none (digits are left to the model, whose
# Chinese reading of digits is its native one).
NUM2WORDS_LANGS = {"en": "en", "de": "de", "it": "it", "pt": "pt", "es": "es", "ja": "ja", "ko": "ko",
                   "fr": "fr", "ru": "ru"}  # fmt: skip
# Languages where a four-digit year is read differently from the cardinal ("nineteen ninety-nine",
# "neunzehnhundertneunundneunzig"); num2words' Japanese "year" form is an era name, so it is not used.
_YEAR_FORM_LANGS = frozenset({"en", "de"})
_NOT_LATIN = r"0-9A-Za-z\u00C0-\u024F"  # a number glued to Latin letters ("mp3", "1st") is left alone


def _num2words() -> Callable[..., str] | None:
    """The num2words function, or None when the optional package is not installed."""
    try:
        from num2words import num2words
    except ImportError:
        return None
    return num2words


def number_normalization() -> str:
    """What spells out digits in this process (part of the clip identity)."""
    if _num2words() is None:
        return "none"
    try:
        return f"num2words {importlib.metadata.version('num2words')}"
    except importlib.metadata.PackageNotFoundError:
        return "num2words"


@functools.lru_cache(maxsize=16)
def _number_pattern(group_marks: str, decimal_mark: str) -> re.Pattern[str]:
    group, decimal = f"[{re.escape(group_marks)}]", re.escape(decimal_mark)  # as the language writes them
    return re.compile(
        rf"(?<![{_NOT_LATIN}])(\d{{1,3}}(?:{group}\d{{3}})+|\d+)(?:{decimal}(\d+))?(?![{_NOT_LATIN}])"
    )


def spell_out_numbers(text: str, language: Language) -> str:
    """Write digits as words of the target language ("1999" -> "nineteen ninety-nine") so the model does
    not read them in another language. Unchanged when num2words is missing or lacks the language."""
    if not any(ch.isdigit() for ch in text):
        return text
    converter = _num2words()
    lang = NUM2WORDS_LANGS.get(language.code)
    if converter is None or lang is None:
        return text

    def replace(match: re.Match[str]) -> str:
        integer = re.sub(r"\D", "", match.group(1))
        fraction = match.group(2)
        try:
            if fraction:
                words = converter(Decimal(f"{int(integer)}.{fraction}"), lang=lang)
            elif lang in _YEAR_FORM_LANGS and len(match.group(1)) == 4 and 1100 <= int(integer) <= 2099:
                words = converter(int(integer), lang=lang, to="year")
            else:
                words = converter(int(integer), lang=lang)
        except Exception:  # unsupported size or form: keep the digits rather than fail the line
            return match.group(0)
        return str(words).replace(",", "")

    return _number_pattern(language.group_marks, language.decimal_mark).sub(replace, text)


# -- runtime and model loading -------------------------------------------------------------------------


@dataclass(frozen=True)
class Runtime:
    device: str  # device_map for from_pretrained: "cuda:0", "cpu"
    dtype: str  # torch dtype name: "bfloat16", "float32"
    attn_implementation: str | None  # None: the transformers default (sdpa, else eager)


def resolve_runtime(device: str | None = None, dtype: str | None = None, attn: str | None = None) -> Runtime:
    """CUDA + bfloat16 when a GPU is visible, else CPU + float32; flash_attention_2 only when the
    flash_attn package is importable (and the device is CUDA). Explicit values win."""
    import torch

    cuda = torch.cuda.is_available()
    device = device or ("cuda:0" if cuda else "cpu")
    on_cuda = device.startswith("cuda")
    dtype = dtype or ("bfloat16" if on_cuda else "float32")
    if not isinstance(getattr(torch, dtype, None), torch.dtype):
        raise ConfigError(f"unknown torch dtype {dtype!r}; use bfloat16, float16 or float32")
    if attn is None and on_cuda and importlib.util.find_spec("flash_attn") is not None:
        attn = "flash_attention_2"
    return Runtime(device=device, dtype=dtype, attn_implementation=attn)


def _import_qwen_tts() -> Any:
    # qwen_tts prints a flash-attn banner on stdout at import time; keep it off the CLI's output.
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        import qwen_tts
    if buffer.getvalue().strip():
        log.debug("qwen_tts import said: %s", buffer.getvalue().strip())
    return qwen_tts


@functools.lru_cache(maxsize=4)
def load_model(model_ref: str, device: str, dtype: str, attn_implementation: str | None) -> Any:
    """Load a Qwen3TTSModel once per process per (model, device, dtype, attention)."""
    import torch

    qwen_tts = _import_qwen_tts()
    kwargs: dict[str, Any] = {"device_map": device, "dtype": getattr(torch, dtype)}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    tts = qwen_tts.Qwen3TTSModel.from_pretrained(model_ref, **kwargs)
    tts.model.eval()
    tts.model.requires_grad_(False)
    return tts


def _load(model_ref: str, runtime: Runtime) -> Any:
    with _LOAD_LOCK:
        try:
            return load_model(model_ref, runtime.device, runtime.dtype, runtime.attn_implementation)
        except (OSError, ValueError, TypeError, ImportError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            fix = (
                "is it a complete Qwen3-TTS checkpoint?"
                if Path(model_ref).is_dir()
                else f"fetch it with `qwen-dub models pull --tts local --tts-local-model {model_ref}`"
            )
            raise ConfigError(
                f"cannot load Qwen3-TTS model {model_ref!r} ({exc.__class__.__name__}: {first[:200]}); {fix}"
            ) from None


def local_model_fingerprint(path: Path) -> str:
    """A content key for a local checkpoint: every file's relative name and size, plus the exact bytes of
    its JSON configs (cheap: no weight file is read)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        digest.update(f"{rel}\0{file.stat().st_size}\n".encode())
        if file.suffix == ".json" and file.stat().st_size < 1_000_000:
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- voice clone prompts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClonePrompt:
    """A reusable voice-clone prompt: qwen_tts VoiceClonePromptItem(s) plus an id for cache keys."""

    id: str  # from the reference audio's sha256, the reference text and the mode
    audio_sha256: str
    ref_text: str | None
    x_vector_only: bool  # True when no reference text was given (speaker embedding only, no ICL)
    items: tuple[Any, ...] = field(repr=False, compare=False)


def clone_prompt_id(audio_sha256: str, ref_text: str | None) -> str:
    mode = "xvec" if ref_text is None else "icl"
    return hashlib.sha256(f"{audio_sha256}\0{ref_text or ''}\0{mode}".encode()).hexdigest()[:16]


def _save_prompt(path: Path, prompt: ClonePrompt, model_key: str) -> None:
    import torch

    (item,) = prompt.items
    payload = {
        "format": CLONE_PROMPT_FORMAT,
        "model": model_key,
        "audio_sha256": prompt.audio_sha256,
        "ref_text": prompt.ref_text,
        "x_vector_only_mode": bool(item.x_vector_only_mode),
        "icl_mode": bool(item.icl_mode),
        "ref_code": None if item.ref_code is None else item.ref_code.detach().cpu(),
        "ref_spk_embedding": item.ref_spk_embedding.detach().cpu(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _read_prompt(path: Path, audio_sha256: str, ref_text: str | None, model_key: str) -> Any:
    """The saved VoiceClonePromptItem, or None when absent, unreadable or not for this model/reference."""
    import torch

    if not path.is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or foreign file: recompute and overwrite
        log.warning("ignoring unreadable clone prompt %s (%s)", path.name, exc.__class__.__name__)
        return None
    if (
        not isinstance(data, dict)
        or data.get("format") != CLONE_PROMPT_FORMAT
        or data.get("model") != model_key
        or data.get("audio_sha256") != audio_sha256
        or data.get("ref_text") != ref_text
    ):
        return None
    qwen_tts = _import_qwen_tts()
    return qwen_tts.VoiceClonePromptItem(
        ref_code=data["ref_code"],
        ref_spk_embedding=data["ref_spk_embedding"],
        x_vector_only_mode=bool(data["x_vector_only_mode"]),
        icl_mode=bool(data["icl_mode"]),
        ref_text=data["ref_text"],
    )


# -- the adapter ---------------------------------------------------------------------------------------


@dataclass
class _Line:
    index: int
    text: str  # as sent to the model (numbers spelt out)
    language: Language
    speaker: str | None  # custom_voice mode: the line's speaker
    ceiling_frames: int
    floor_s: float
    max_new_tokens: int
    earlier_tries: int = 0  # runs that already had this line flagged (SpeechRequest.earlier_tries)
    best: np.ndarray | None = None
    verdict: str | None = None  # of `best`: None (passed), "too_long", "too_short"
    attempts: int = 0
    seed: int | None = None
    history: list[str] = field(default_factory=list)


class QwenLocalTTS:
    """SpeechSynthesizer for Qwen3-TTS on this machine (registry entry "local"); a request's voice is one
    of the CustomVoice speakers (custom_voice mode only: a designed or cloned voice is the instance's own).
    Nothing heavy happens in the constructor (options are validated, no model is loaded); the model loads
    on the first synthesize call or on load()."""

    def __init__(
        self,
        *,
        mode: str = "custom_voice",
        model: str | None = None,
        size: str = "1.7B",
        speaker: str = "Vivian",
        instructions: str | None = None,
        description: str | None = None,
        ref_audio: str | Path | None = None,
        ref_text: str | None = None,
        voice_prompt: ClonePrompt | None = None,
        prompt_cache_dir: str | Path | None = None,
        device: str | None = None,
        dtype: str | None = None,
        attn_implementation: str | None = None,
        generation: GenerationParams | None = None,
        guard: LengthGuard | None = None,
        retries: int = 2,
        seed: int | None = 0,
        normalize_numbers: bool = True,
        route: str = LOCAL,
    ) -> None:
        self.route = route
        if mode not in MODES:
            raise ConfigError(f"unknown local TTS mode {mode!r}; choose one of {', '.join(MODES)}")
        if retries < 0:
            raise ConfigError("retries must be 0 or more")
        self.mode = mode
        self.generation = generation or GenerationParams()
        self.guard = guard or LengthGuard()
        self.retries = retries
        self.seed = seed
        self.normalize_numbers = normalize_numbers
        self.prompt_cache_dir = Path(prompt_cache_dir) if prompt_cache_dir is not None else None
        self._device, self._dtype, self._attn = device, dtype, attn_implementation
        self._runtime: Runtime | None = None
        self._tts: Any = None

        # Which checkpoint, and what it offers, known before loading anything.
        self._local_config: dict[str, Any] | None = None
        if model is not None and Path(model).expanduser().exists():
            path = Path(model).expanduser().resolve()
            config_path = path / "config.json"
            if not path.is_dir() or not config_path.is_file():
                raise ConfigError(
                    f"local Qwen3-TTS model {str(path)!r} is not a checkpoint folder (no config.json)"
                )
            try:
                self._local_config = json.loads(config_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot read {config_path}: {exc.__class__.__name__}") from None
            self.model_ref = str(path)
            self.model_key = f"local:{local_model_fingerprint(path)}"
            model_type = self._local_config.get("tts_model_type")
            if model_type != mode:
                raise ConfigError(
                    f"local Qwen3-TTS model {path.name!r} is a {model_type!r} checkpoint, not {mode!r}"
                    + (f"; use mode {model_type!r}" if model_type in MODES else "")
                )
            self.model_size = "0.6B" if self._local_config.get("tts_model_size") == "0b6" else "1.7B"
        elif model is not None and ("/" not in model or model.startswith((".", "/", "~"))):
            raise ConfigError(f"local Qwen3-TTS model folder {model!r} does not exist")
        else:
            self.model_ref = model or default_model_id(mode, size)
            self.model_key = self.model_ref
            self.model_size = size
            for other, suffix in _MODEL_SUFFIX.items():
                if other != mode and self.model_ref.endswith(f"-{suffix}"):
                    raise ConfigError(f"{self.model_ref} is a {other!r} model, not {mode!r}")
            if mode == "voice_design" and "-0.6B-" in self.model_ref:
                raise ConfigError("voice design exists only as Qwen3-TTS 1.7B (there is no 0.6B VoiceDesign)")

        # Voice options of the mode.
        self.speaker: str | None = None
        self.instructions = (instructions or "").strip() or None
        self.description = (description or "").strip() or None
        if mode != "custom_voice" and self.instructions:
            raise ConfigError(
                "instructions apply to the custom_voice mode"
                + (" (describe the voice with description)" if mode == "voice_design" else "")
            )
        if mode != "voice_design" and self.description:
            raise ConfigError("a voice description needs the voice_design mode")
        if mode != "base" and (ref_audio is not None or voice_prompt is not None):
            raise ConfigError("a reference recording (voice cloning) needs the base mode")
        if mode == "custom_voice":
            self.speaker = resolve_speaker(speaker, self._speakers_offered())
            if self.instructions and self.model_size == "0.6B":
                raise ConfigError("style instructions need the 1.7B CustomVoice model (0.6B ignores them)")
        elif mode == "voice_design":
            if self.model_size != "1.7B":
                raise ConfigError("voice design exists only as Qwen3-TTS 1.7B (there is no 0.6B VoiceDesign)")
            if not self.description:
                raise ConfigError("the voice_design mode needs a non-empty voice description")

        # Voice cloning: the prompt's id is known now (it hashes the file); the prompt itself is computed
        # (or read from the cache) when first needed.
        self.voice_prompt = voice_prompt
        self._pending_ref: tuple[Path, str | None, str] | None = None
        if ref_audio is not None:
            if voice_prompt is not None:
                raise ConfigError("give either a reference recording or a prepared voice prompt, not both")
            path = self._check_ref_audio(ref_audio)
            self._pending_ref = (path, _clean_ref_text(ref_text), _file_sha256(path))

    # -- protocol ----------------------------------------------------------------------------------

    def speaker_for(self, voice: str | None) -> str | None:
        """The CustomVoice speaker a request asks for (None: the instance's own voice)."""
        if voice is None:
            return self.speaker
        if self.mode != "custom_voice":
            raise ConfigError(f"a {self.mode.replace('_', ' ')} voice cannot speak as {voice!r}")
        return resolve_speaker(voice, self._speakers_offered())

    def identity(self, voice: str | None = None) -> dict[str, Any]:
        """The clip cache key minus text and language. Device, dtype and attention are left out on
        purpose: they are where the model runs, not which voice is asked for."""
        voice_fields: dict[str, Any]
        if self.mode == "custom_voice":
            voice_fields = {"speaker": self.speaker_for(voice), "instructions": self.instructions or ""}
        elif self.mode == "voice_design":
            self.speaker_for(voice)
            voice_fields = {"description": self.description}
        else:
            self.speaker_for(voice)
            voice_fields = {"voice_prompt": self._prompt_id()}
        seed_policy: dict[str, Any] = (
            {"seed": "random"}
            if self.seed is None
            else {"seed": self.seed, "retry_seed_step": RETRY_SEED_STEP}
        )
        return {
            "route": self.route,
            "engine": f"qwen-tts {_package_version('qwen-tts')}",
            "model": self.model_key,
            "mode": self.mode,
            **voice_fields,
            "generation": asdict(self.generation),
            "guard": {**asdict(self.guard), "retries": self.retries},
            "seed_policy": seed_policy,
            "numbers": number_normalization() if self.normalize_numbers else "off",
            "sample_rate": SAMPLE_RATE,
        }

    def synthesize(self, text: str, language: Language, voice: str | None = None) -> SynthesizedClip:
        return self.synthesize_requests([SpeechRequest(text, language, voice)])[0]

    def synthesize_batch(
        self, texts: list[str], language: Language, voice: str | None = None
    ) -> list[SynthesizedClip]:
        """Lines of one language and voice in one generate call (see synthesize_requests)."""
        return self.synthesize_requests([SpeechRequest(text, language, voice) for text in texts])

    def batch_limit(self, requests: Sequence[SpeechRequest]) -> int | None:
        """How many lines like these (the longest decides) fit one generate call in the GPU's free memory,
        by the per-item cost measured on an H200 (models/tts_batching.py); None off CUDA, where memory is
        not the limit and the configured batch size applies."""
        if not requests or not self.runtime.device.startswith("cuda"):
            return None
        import torch

        from models.tts_batching import batch_size_for

        self.load()
        frames = max(self._plan(0, r.text, r.language, None).max_new_tokens for r in requests)
        free, _total = torch.cuda.mem_get_info(torch.device(self.runtime.device))
        return batch_size_for(free, self.model_size, frames)

    def synthesize_requests(self, requests: Sequence[SpeechRequest]) -> list[SynthesizedClip]:
        """Several lines in ONE generate_* call, whatever their languages and (CustomVoice) speakers: the
        package takes one text, language and speaker per item. Plus one call per retry round for the
        lines that failed the guard. Returns one clip per request, in order. Keep batches of similar
        lengths: the call runs until its longest line is done (max_new_tokens is the largest cap)."""
        if not requests:
            return []
        for language in {r.language.code: r.language for r in requests}.values():
            self._check_language_name(language)
        lines = [self._plan(i, r.text, r.language, self.speaker_for(r.voice)) for i, r in enumerate(requests)]
        for line, request in zip(lines, requests, strict=True):
            if request.earlier_tries < 0:
                raise ConfigError("earlier_tries must be 0 or more")
            line.earlier_tries = request.earlier_tries
        tts = self.load()
        for language in {r.language.code: r.language for r in requests}.values():
            self._check_language_loaded(tts, language)
        prompt = self._ensure_prompt() if self.mode == "base" else None

        # Lines retried after earlier runs flagged them take their own seeds, so they get their own calls.
        for tries in sorted({line.earlier_tries for line in lines}):
            pending = [line for line in lines if line.earlier_tries == tries]
            for round_index in range(self.retries + 1):
                seed = self._seed_for(round_index, tries)
                cap = max(line.max_new_tokens for line in pending)
                wavs = self._generate(tts, pending, cap, seed, prompt)
                for line, wav in zip(pending, wavs, strict=True):
                    self._judge(line, wav, seed)
                pending = [line for line in pending if line.verdict is not None]
                if not pending or round_index == self.retries:
                    break
                log.info(
                    "local TTS guard: regenerating %d of %d line(s) with a new seed (%s)",
                    len(pending), len(lines), ", ".join(sorted({str(line.verdict) for line in pending})),
                )  # fmt: skip
        return [self._clip(line, len(requests)) for line in lines]

    # -- voice cloning -------------------------------------------------------------------------------

    def clone_prompt(self, ref_audio_path: str | Path, ref_text: str | None = None) -> ClonePrompt:
        """Compute (once) a reusable voice-clone prompt from a reference recording and, optionally, its
        transcript (without it, x_vector_only_mode: the speaker embedding alone). Saved under
        prompt_cache_dir, so another instance or process reads it instead of recomputing it."""
        if self.mode != "base":
            raise ConfigError("voice cloning needs the base mode")
        path = self._check_ref_audio(ref_audio_path)
        return self._prompt_for(path, _clean_ref_text(ref_text), _file_sha256(path))

    def _prompt_for(self, path: Path, ref_text: str | None, audio_sha256: str) -> ClonePrompt:
        prompt_id = clone_prompt_id(audio_sha256, ref_text)
        memo_key = (self.model_key, prompt_id)
        if memo_key in _PROMPT_MEMO:
            return _PROMPT_MEMO[memo_key]
        cache_file = self._prompt_cache_file(prompt_id)
        item = None
        if cache_file is not None:
            item = _read_prompt(cache_file, audio_sha256, ref_text, self.model_key)
        if item is None:
            tts = self.load()
            import torch

            with _GENERATE_LOCK, torch.inference_mode():
                try:
                    items = tts.create_voice_clone_prompt(
                        ref_audio=str(path), ref_text=ref_text, x_vector_only_mode=ref_text is None
                    )
                except Exception as exc:  # an undecodable or unusable recording (librosa/audioread errors)
                    raise InputError(
                        f"cannot build a voice prompt from {path.name}: {exc.__class__.__name__}: {exc}"
                    ) from None
            item = items[0]
            prompt = ClonePrompt(prompt_id, audio_sha256, ref_text, ref_text is None, (item,))
            if cache_file is not None:
                _save_prompt(cache_file, prompt, self.model_key)
            log.info("voice prompt %s computed from %s", prompt_id, path.name)
        else:
            prompt = ClonePrompt(prompt_id, audio_sha256, ref_text, ref_text is None, (item,))
            log.info("voice prompt %s read from the cache", prompt_id)
        _PROMPT_MEMO[memo_key] = prompt
        return prompt

    def _prompt_cache_file(self, prompt_id: str) -> Path | None:
        if self.prompt_cache_dir is None:
            return None
        model = hashlib.sha256(self.model_key.encode()).hexdigest()[:12]
        return self.prompt_cache_dir / f"qwen-clone-{model}-{prompt_id}.pt"

    def _prompt_id(self) -> str:
        if self.voice_prompt is not None:
            return self.voice_prompt.id
        if self._pending_ref is not None:
            _, ref_text, sha = self._pending_ref
            return clone_prompt_id(sha, ref_text)
        return ""

    def _ensure_prompt(self) -> ClonePrompt:
        if self.voice_prompt is None and self._pending_ref is not None:
            path, ref_text, sha = self._pending_ref
            self.voice_prompt = self._prompt_for(path, ref_text, sha)
        if self.voice_prompt is None:
            raise ConfigError("the base mode clones a voice: give a reference recording (ref_audio)")
        return self.voice_prompt

    @staticmethod
    def _check_ref_audio(ref_audio: str | Path) -> Path:
        path = Path(ref_audio).expanduser()
        if not path.is_file():
            raise InputError(f"reference recording {str(path)!r} does not exist")
        return path.resolve()

    # -- model ---------------------------------------------------------------------------------------

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            self._runtime = resolve_runtime(self._device, self._dtype, self._attn)
        return self._runtime

    def load(self) -> Any:
        """Load (or take from the process cache) the model; returns the qwen_tts.Qwen3TTSModel."""
        if self._tts is None:
            tts = _load(self.model_ref, self.runtime)
            model_type = getattr(tts.model, "tts_model_type", None)
            if model_type != self.mode:
                raise ConfigError(f"{self.model_ref} is a {model_type!r} model, not {self.mode!r}")
            if self.mode == "custom_voice" and self.speaker is not None:
                offered = tts.get_supported_speakers() or []
                if offered and self.speaker.lower() not in offered:
                    raise ConfigError(
                        f"{self.model_ref} has no speaker {self.speaker!r}; it has {', '.join(offered)}"
                    )
            self._tts = tts
        return self._tts

    def close(self) -> None:
        """Free the model: this instance's reference and the process cache (instances still holding the
        model keep it alive until they close too). A later synthesize call loads it again."""
        if self._tts is None:
            return
        self._tts = None
        load_model.cache_clear()
        gc.collect()
        if self.runtime.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    # -- internals -----------------------------------------------------------------------------------

    def _speakers_offered(self) -> tuple[str, ...]:
        if self._local_config is None:
            return SPEAKERS
        table = (self._local_config.get("talker_config") or {}).get("spk_id") or {}
        by_key = {_speaker_key(s): s for s in SPEAKERS}
        return tuple(by_key.get(_speaker_key(name), name) for name in table) or SPEAKERS

    def _languages_offered(self) -> frozenset[str]:
        if self._local_config is None:
            return QWEN_LANGUAGES
        table = (self._local_config.get("talker_config") or {}).get("codec_language_id") or {}
        return frozenset(name.lower() for name in table if "dialect" not in name) or QWEN_LANGUAGES

    def _check_language_name(self, language: Language) -> None:
        offered = self._languages_offered()
        if language.name.lower() not in offered:
            raise ConfigError(
                f"{self.model_ref} does not speak {language.name}; it speaks "
                + ", ".join(sorted(name.capitalize() for name in offered))
            )

    def _check_language_loaded(self, tts: Any, language: Language) -> None:
        offered = tts.get_supported_languages()
        if offered is not None and language.name.lower() not in offered:
            raise ConfigError(
                f"{self.model_ref} does not speak {language.name}; it speaks "
                + ", ".join(sorted(str(name).capitalize() for name in offered if name != "auto"))
            )

    def _plan(self, index: int, text: str, language: Language, speaker: str | None) -> _Line:
        clean = " ".join(text.split())
        if not clean:
            raise ConfigError("empty text cannot be synthesised")
        if self.normalize_numbers:
            clean = spell_out_numbers(clean, language)
        ceiling_frames = self.guard.ceiling_frames(clean)
        # Measured with qwen-tts 0.1.1: max_new_tokens=N yields at most N-1 codec frames, hence the +1.
        max_new_tokens = ceiling_frames + 1
        if self.generation.max_new_tokens is not None:
            max_new_tokens = min(max_new_tokens, self.generation.max_new_tokens)
        return _Line(
            index, clean, language, speaker, ceiling_frames, self.guard.floor_s(clean), max_new_tokens
        )

    def _seed_for(self, round_index: int, earlier_tries: int = 0) -> int:
        """The seed of round `round_index` of a call (0: the first generate call) for lines that
        `earlier_tries` earlier runs already synthesised and had flagged. A run makes at most retries + 1
        rounds, so run n (earlier_tries = n - 1) takes steps (n - 1) * (retries + 1) to
        n * (retries + 1) - 1 of the sequence seed + k * RETRY_SEED_STEP: a retry never repeats a seed an
        earlier run used, and a first run's seeds are those of earlier versions (existing caches stay
        reproducible)."""
        if self.seed is None:
            return random.SystemRandom().randrange(2**31)
        step = earlier_tries * (self.retries + 1) + round_index
        return (self.seed + step * RETRY_SEED_STEP) % 2**63

    def _generate(
        self,
        tts: Any,
        lines: list[_Line],
        max_new_tokens: int,
        seed: int,
        prompt: ClonePrompt | None,
    ) -> list[np.ndarray]:
        import torch

        kwargs = {**self.generation.sampling_kwargs(), "max_new_tokens": max_new_tokens}
        texts = [line.text for line in lines]
        languages = [line.language.name for line in lines]
        with _GENERATE_LOCK, torch.inference_mode():
            torch.manual_seed(seed)
            try:
                if self.mode == "custom_voice":
                    wavs, rate = tts.generate_custom_voice(
                        text=texts,
                        speaker=[line.speaker for line in lines],
                        language=languages,
                        instruct=self.instructions,
                        **kwargs,
                    )
                elif self.mode == "voice_design":
                    wavs, rate = tts.generate_voice_design(
                        text=texts, instruct=self.description, language=languages, **kwargs
                    )
                else:
                    assert prompt is not None
                    wavs, rate = tts.generate_voice_clone(
                        text=texts, language=languages, voice_clone_prompt=list(prompt.items), **kwargs
                    )
            except ValueError as exc:  # the package's own validation (speaker, language, batch sizes)
                raise ConfigError(f"qwen-tts refused the request: {exc}") from None
            except RuntimeError as exc:  # CUDA out of memory and friends
                hint = "; try smaller batches" if "out of memory" in str(exc).lower() else ""
                raise UpstreamError(
                    f"local speech synthesis failed: {exc.__class__.__name__}{hint}",
                    code="LocalEngineError",
                    detail=f"{exc.__class__.__name__}: {str(exc)[:200]}{hint}",
                ) from None
        if int(rate) != SAMPLE_RATE:
            raise UpstreamError(f"qwen-tts returned {rate} Hz audio, expected {SAMPLE_RATE}", code="BadAudio")
        if len(wavs) != len(texts):
            raise UpstreamError(
                f"qwen-tts returned {len(wavs)} clips for {len(texts)} lines", code="BadAudio"
            )
        return [_as_mono_float32(w) for w in wavs]

    def _judge(self, line: _Line, wav: np.ndarray, seed: int) -> None:
        line.attempts += 1
        limit = line.ceiling_frames * SAMPLES_PER_FRAME
        verdict: str | None = None
        if wav.size >= limit - SAMPLES_PER_FRAME // 2:  # reached the ceiling: EOS was missed
            verdict = "too_long"
            wav = _cut(wav, limit)
        elif wav.size == 0 or wav.size / SAMPLE_RATE < line.floor_s:
            verdict = "too_short"
        line.history.append(verdict or "ok")
        # Keep the first clip that passes. Among failures prefer the longest too_short one (clean speech
        # that lost its ending) over a runaway cut at the ceiling (babble at its end).
        if line.best is None or verdict is None:
            keep = True
        elif verdict == "too_short":
            keep = line.verdict == "too_long" or wav.size > line.best.size
        else:
            keep = False
        if keep:
            line.best, line.verdict, line.seed = wav, verdict, seed

    def _clip(self, line: _Line, batch_size: int) -> SynthesizedClip:
        assert line.best is not None
        extra: dict[str, Any] = {
            "engine": "qwen-tts",
            "model": self.model_key,
            "mode": self.mode,
            "attempts": line.attempts,
            "seed": line.seed,
            "earlier_tries": line.earlier_tries,
            "batch_size": batch_size,
            "ceiling_s": line.ceiling_frames / FRAME_RATE_HZ,
            "floor_s": round(line.floor_s, 3),
            "guard_history": list(line.history),
        }
        if line.verdict is not None:
            extra["guard"] = line.verdict
            log.warning(
                "local TTS line kept after %d attempt(s) but flagged %s (%.2f s; allowed %.2f-%.2f s)",
                line.attempts, line.verdict, line.best.size / SAMPLE_RATE, line.floor_s,
                line.ceiling_frames / FRAME_RATE_HZ,
            )  # fmt: skip
        return SynthesizedClip(
            audio=line.best,
            sample_rate=SAMPLE_RATE,
            billed_characters=0,
            attempts=line.attempts,
            requests=1,
            extra=extra,
        )


def _clean_ref_text(ref_text: str | None) -> str | None:
    if ref_text is None:
        return None
    return " ".join(ref_text.split()) or None


def _as_mono_float32(wav: Any) -> np.ndarray:
    audio = np.asarray(wav, dtype=np.float32)
    if audio.ndim == 2:  # (channels, samples) or (samples, channels): average the shorter axis
        audio = audio.mean(axis=0 if audio.shape[0] < audio.shape[1] else 1)
    audio = np.nan_to_num(audio.reshape(-1), nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(audio, -1.0, 1.0).astype(np.float32, copy=False)


def _cut(wav: np.ndarray, samples: int, fade_s: float = 0.01) -> np.ndarray:
    """Cut at `samples` with a short fade-out so the cut does not click."""
    out = wav[:samples].copy()
    fade = min(out.size, int(fade_s * SAMPLE_RATE))
    if fade > 0:
        out[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return out


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
