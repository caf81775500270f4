"""Translation with a local instruction-tuned LLM (Qwen2.5-Instruct by default) through transformers.

Route "local" of the translation stage. Besides the `Translator` protocol (`translate` one line), it offers a
batch API, `translate_batch(items, source, target)`, where each `TranslationItem` carries its line plus the
neighbouring lines as context, a length budget and glossary terms; a batch is one `model.generate` call.

Defaults. `Qwen/Qwen2.5-7B-Instruct` on a CUDA GPU (bf16, about 15 GB: the smallest Qwen2.5 size that
translates all ten dubbing languages well, and it fits a 24 GB card); `Qwen/Qwen2.5-1.5B-Instruct` on CPU
(float32, about 6 GB of RAM: 3B doubles memory and time for a modest gain and is not Apache-2.0; 0.5B writes
poor Japanese and Korean). Any local directory with a `config.json` (downloaded or fine-tuned) works too.

The model and tokenizer are loaded once per process (`load_local_lm`, cached by model, device and dtype), and
only when a line actually needs translating: a run whose lines are all cached never loads them.

Determinism. Decoding is greedy and a line's result does not depend on the batch it was generated in: prompts
are left-padded with an attention mask (transformers derives the position ids from it), and each line's output
is cut at its own token limit although the batch runs to the largest one. Results can therefore be cached per
line, keyed by `identity()`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ConfigError, UpstreamError
from core.languages import Language
from models.registry import LOCAL

if TYPE_CHECKING:
    import torch

DEFAULT_GPU_MODEL = "Qwen/Qwen2.5-7B-Instruct"
DEFAULT_CPU_MODEL = "Qwen/Qwen2.5-1.5B-Instruct"
DEFAULT_BATCH_SIZE = 8

# Bump whenever the wording or layout of the prompt changes: it is part of identity(), hence of cache keys.
PROMPT_VERSION = "local-mt-v1"

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_FINGERPRINT_CONTENT = (
    "config.json",
    "generation_config.json",
    "tokenizer_config.json",
    "chat_template.jinja",
)
_FINGERPRINT_SIZE_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf", ".json", ".txt", ".model", ".tiktoken")


# ----------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class TranslationItem:
    """One line to translate and what the model should know about it.

    `previous` / `next`: neighbouring lines in reading order (oldest first), shown to the model as context
    it must not translate (one string or a sequence; stored as a tuple of non-empty lines).
    `max_chars`: target length budget in characters. `glossary`: source term -> target term that must be
    used; only the terms occurring in `text` reach the prompt, so a whole-show glossary can go to every item.
    `index`: how errors name the line (the position in the batch when None).
    """

    text: str
    previous: Sequence[str] = ()
    next: Sequence[str] = ()
    max_chars: int | None = None
    glossary: Mapping[str, str] = field(default_factory=dict)
    index: int | None = None

    def __post_init__(self) -> None:
        for name in ("previous", "next"):
            value = getattr(self, name)
            lines = (value,) if isinstance(value, str) else tuple(value)
            object.__setattr__(self, name, tuple(s.strip() for s in lines if s and s.strip()))
        if self.max_chars is not None and self.max_chars < 1:
            raise ValueError(f"max_chars must be positive, got {self.max_chars}")

    def key_fields(self) -> dict[str, Any]:
        """What, besides the translator's identity() and the languages, determines this item's output: put it
        in the per-line cache key (the index only names the line in errors, so it is left out)."""
        return {
            "text": self.text,
            "previous": list(self.previous),
            "next": list(self.next),
            "max_chars": self.max_chars,
            "glossary": self.relevant_glossary(),
        }

    def relevant_glossary(self) -> dict[str, str]:
        """The glossary entries whose source term occurs in the line (case-insensitive), in glossary order."""
        folded = self.text.casefold()
        return {s: t for s, t in self.glossary.items() if s.strip() and s.casefold() in folded}


@dataclass(frozen=True)
class GenerationParams:
    """Greedy decoding; each line's token limit comes from the line (`LocalLLMTranslator.token_limit`)."""

    tokens_per_source_token: float = 2.5  # room for expansion (CJK -> Latin/Cyrillic) and a stray word
    tokens_per_budget_char: float = 1.5  # N characters take at most ~N tokens; 1.5x tolerates overshoot
    token_slack: int = 16
    max_new_tokens_cap: int = 512
    repetition_penalty: float = 1.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "do_sample": False,
            "tokens_per_source_token": self.tokens_per_source_token,
            "tokens_per_budget_char": self.tokens_per_budget_char,
            "token_slack": self.token_slack,
            "max_new_tokens_cap": self.max_new_tokens_cap,
            "repetition_penalty": self.repetition_penalty,
        }


@dataclass(frozen=True)
class Completion:
    """What the model wrote for one item (decoded without the prompt and special tokens)."""

    raw: str
    new_tokens: int
    finished: bool  # False when the line hit its token limit instead of an end-of-turn token


@dataclass(frozen=True)
class ThroughputResult:
    lines: int
    batch_size: int
    seconds: float

    @property
    def lines_per_second(self) -> float:
        return self.lines / self.seconds if self.seconds > 0 else float("inf")


# ----------------------------------------------------------------------------------------- prompts

SYSTEM_PROMPT = (
    "You are a professional translator of film and video dialogue for dubbing. "
    "Translate the line the user marks for translation from {source} into {target}, naturally and "
    "faithfully, as it would be spoken. Reply with the {target} translation of that line only: "
    "no explanations, notes, quotation marks, labels, alternatives or transliterations."
)


def build_messages(item: TranslationItem, source: Language | None, target: Language) -> list[dict[str, str]]:
    """The system and user messages for one item (rendered by the tokenizer's chat template)."""
    source_name = source.name if source else "the original language (detect it)"
    system = SYSTEM_PROMPT.format(source=source_name, target=target.name)
    parts: list[str] = []
    if item.previous:
        parts.append("Previous lines, for context only (do not translate them):\n" + _bullets(item.previous))
    if item.next:
        parts.append("Following lines, for context only (do not translate them):\n" + _bullets(item.next))
    terms = item.relevant_glossary()
    if terms:
        lines = "\n".join(f"- {s} -> {t}" for s, t in terms.items())
        parts.append(f"Glossary (you must translate these terms exactly like this):\n{lines}")
    if item.max_chars is not None:
        parts.append(
            f"Length limit: the {target.name} translation must be at most {item.max_chars} characters long; "
            "shorten or rephrase if needed, keeping the meaning."
        )
    language = source.name if source else "source"
    parts.append(f"Translate this {language} line into {target.name}:\n{item.text.strip()}")
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(parts)}]


def _bullets(lines: Sequence[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)


# ----------------------------------------------------------------------------------------- parsing

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_CHAT_TOKEN = re.compile(r"<\|[^|<>]{1,40}\|>")
_FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.DOTALL)
_LABEL = re.compile(r"^[\s>*_#-]*(?P<label>[^:：\n]{1,60}?)[\s*_]*[:：][\s*_]*(?P<rest>.*)$")
_PREAMBLE_START = re.compile(
    r"^(sure|certainly|of course|okay|ok|here|below|the following|this is|i have|i've)\b", re.IGNORECASE
)
_TRANSLATION_WORD = re.compile(r"translat|übersetz|traduc|tradu[zç]|перев|翻译|翻譯|翻訳|번역", re.IGNORECASE)
_TARGET_LABELS = frozenset(
    {"translation", "translated text", "translated line", "output", "answer", "result", "response", "target",
     "dubbing", "dub", "final translation", "final answer"}
)  # fmt: skip
_SOURCE_LABELS = frozenset({"source", "original", "input", "source text", "original text", "line", "text"})
_NOTE_LINE = re.compile(
    r"^[\s(*_\[]*(note|notes|nb|explanation|literally|literal translation|alternative|alternatively|context|"
    r"remark|comment|pronunciation|romanization|romaji|pinyin|transliteration|注|注意|备注|※)\b",
    re.IGNORECASE,
)
_TRAILING_PAREN = re.compile(r"\s*[(（][^()（）]*[)）]\s*$")
_QUOTE_PAIRS = (
    ('"', '"'),
    ("'", "'"),
    ("“", "”"),
    ("„", "“"),
    ("«", "»"),
    ("「", "」"),
    ("『", "』"),
    ("‘", "’"),
)


def parse_translation(
    raw: str,
    *,
    source_text: str | None = None,
    source_name: str | None = None,
    target_name: str | None = None,
) -> str:
    """Extract the translation from what an instruct model wrote. Rules, in order:

    1. Reasoning: closed `<think>...</think>` blocks are removed; text before a lone `</think>` (the chat
       template opened the block) is dropped; an unclosed `<think>` drops everything after it (truncated).
    2. Leftover chat tokens such as `<|im_end|>` are removed.
    3. Code fences: when the reply contains a fenced block, only the first block's content is kept.
    4. Line by line (blank lines kept as paragraph breaks):
       - a preamble ending with a colon ("Here is the translation:", "Sure! In Japanese:") is dropped when it
         starts like one (sure/here/certainly...) or mentions translating (in any of the ten languages);
       - a label is stripped and the text after it kept: "Translation:", "Output:", "<Target> translation:",
         "<Target>:" (also in **bold**), "Here is the translation: <text>"; not when the source line starts
         with the same label ("Result: ...");
       - a line labelled as the source ("Original:", "Source:", "<Source>:") is an echo and dropped;
       - a note line ("Note: ...", "(Literally ...)", "Explanation:", "Pinyin: ...") ends the translation.
    5. Echo: a line or paragraph equal to the source text is dropped when something else remains.
    6. The first paragraph is the translation, cut to as many lines as the source has (one when unknown), so
       commentary or a romanization on later lines is ignored.
    7. A trailing parenthetical "(informal)" / "（直訳: ...）" is a note unless the source also ends with one.
    8. Wrapping quotes ("...", “...”, «...», 「...」...), backticks and bold/italic markers are removed unless
       the source is wrapped the same way; runs of whitespace are collapsed within each line.

    Returns "" when nothing is left (the caller decides what an empty translation means).
    """
    text = _strip_reasoning(raw)
    text = _CHAT_TOKEN.sub("", text)
    fence = _FENCE.search(text)
    if fence:
        text = fence.group(1)
    source_norm = _normalise(source_text) if source_text else None
    target_labels = set(_TARGET_LABELS)
    source_labels = set(_SOURCE_LABELS)
    if target_name:
        t = target_name.casefold()
        target_labels |= {t, f"{t} translation", f"translation ({t})", f"translation in {t}", f"in {t}"}
    if source_name:
        source_labels |= {source_name.casefold(), f"{source_name.casefold()} text"}
    source_label = _LABEL.match(source_text.strip()) if source_text else None
    own_label = source_label.group("label").strip(" *_").casefold() if source_label else None

    kept: list[str] = []  # content lines; "" marks a paragraph break
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            kept.append("")
            continue
        label_match = _LABEL.match(stripped)
        if label_match:
            label = label_match.group("label").strip(" *_").casefold()
            rest = label_match.group("rest").strip()
            if label in source_labels and label != own_label:
                continue  # an echo of the source
            if (label in target_labels and label != own_label) or (
                _is_preamble(label) and (not rest or _PREAMBLE_START.match(label))
            ):
                stripped = rest
                if not stripped:
                    continue
        if _NOTE_LINE.match(stripped) and any(kept):
            break
        kept.append(stripped)

    paragraphs = _paragraphs(kept)
    if source_norm is not None and len(paragraphs) > 1:  # "source\n\ntranslation"
        paragraphs = [p for p in paragraphs if _normalise(" ".join(p)) != source_norm] or paragraphs
    lines = paragraphs[0] if paragraphs else []
    if source_norm is not None and len(lines) > 1:  # "source\ntranslation"
        lines = [ln for ln in lines if _normalise(ln) != source_norm] or lines
    max_lines = len([ln for ln in (source_text or "").splitlines() if ln.strip()]) or 1
    result = "\n".join(" ".join(ln.split()) for ln in lines[:max_lines]).strip()
    if not (source_text and _TRAILING_PAREN.search(source_text.strip())):
        without_note = _TRAILING_PAREN.sub("", result).strip()
        if without_note:
            result = without_note
    return _unwrap(result, source_text)


def _strip_reasoning(raw: str) -> str:
    text = _THINK_BLOCK.sub("", raw)
    lower = text.casefold()
    if "</think>" in lower:
        text = text[lower.rindex("</think>") + len("</think>") :]
        lower = text.casefold()
    if "<think>" in lower:
        text = text[: lower.index("<think>")]
    return text


def _is_preamble(label: str) -> bool:
    return bool(_PREAMBLE_START.match(label) or _TRANSLATION_WORD.search(label))


def _paragraphs(lines: list[str]) -> list[list[str]]:
    result: list[list[str]] = [[]]
    for line in lines:
        if line:
            result[-1].append(line)
        elif result[-1]:
            result.append([])
    return [p for p in result if p]


def _normalise(text: str) -> str:
    return " ".join(_unwrap(text.strip(), None).casefold().split()).rstrip(".。!！?？")


def _unwrap(text: str, source_text: str | None) -> str:
    source = (source_text or "").strip()
    changed = True
    while changed and len(text) >= 2:
        changed = False
        for marker in ("```", "**", "__", "`", "*", "_"):
            if text.startswith(marker) and text.endswith(marker) and len(text) >= 2 * len(marker):
                inner = text[len(marker) : -len(marker)]
                if marker not in inner:
                    text, changed = inner.strip(), True
        for opening, closing in _QUOTE_PAIRS:
            if not (text.startswith(opening) and text.endswith(closing)) or len(text) < 2:
                continue
            inner = text[len(opening) : -len(closing)]
            if closing in inner or opening in inner:
                continue  # 'Hi' he said 'bye' -- not one wrapped span
            if source.startswith(opening) and source.endswith(closing):
                continue  # the source is quoted too: keep the quotes
            text, changed = inner.strip(), True
    return text


# ----------------------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class LoadedLM:
    """A model and tokenizer ready for batched chat generation (eval mode, left padding, pad token set)."""

    model: Any
    tokenizer: Any
    device: str
    dtype: str
    eos_token_ids: tuple[int, ...]
    pad_token_id: int


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float32"


def default_model(device: str) -> str:
    return DEFAULT_GPU_MODEL if device.startswith("cuda") else DEFAULT_CPU_MODEL


def resolve_model(model: str) -> tuple[str, Path | None]:
    """Check a model reference without loading it: (reference, local directory or None for a hub id).

    An existing path must be a directory with a config.json; a reference that looks like a path but does not
    exist is an error; anything else must look like a hub id ("Org/name").
    """
    reference = model.strip()
    if not reference:
        raise ConfigError("no local translation model given")
    path = Path(reference).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"local translation model {reference!r} is a file; pass the model's directory")
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"local translation model directory {reference!r} has no config.json "
                "(expected a transformers checkpoint: config.json, weights, tokenizer files)"
            )
        return str(path.resolve()), path.resolve()
    looks_like_path = reference.startswith((".", "/", "~", "\\")) or reference.count("/") > 1
    if looks_like_path or not _HUB_ID.match(reference):
        raise ConfigError(
            f"local translation model {reference!r} not found (neither a directory nor a hub id)"
        )
    return reference, None


def fingerprint_directory(path: Path) -> str:
    """A content fingerprint of a local checkpoint: the contents of its small config files (model, generation
    and tokenizer config, chat template) plus the names and sizes of its weight and tokenizer files. Cheap (no
    weights are read); changes when the checkpoint is replaced or re-configured, not when a README is."""
    digest = hashlib.sha256()
    for entry in sorted(path.iterdir(), key=lambda p: p.name):
        if not entry.is_file():
            continue
        if entry.name in _FINGERPRINT_CONTENT:
            digest.update(f"{entry.name}:content:".encode() + entry.read_bytes() + b"\n")
        elif entry.name.endswith(_FINGERPRINT_SIZE_SUFFIXES):
            digest.update(f"{entry.name}:size:{entry.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


_MISTRAL_TYPES = ("mistral", "mistral3", "ministral", "pixtral", "voxtral")


def _tokenizer_kwargs(model: str) -> dict[str, Any]:
    """transformers 4.57.3 warns about a Mistral pre-tokenizer regex bug for every local checkpoint saved by
    4.57.3, whatever its architecture; the fix only concerns Mistral tokenizers: say "no fix" for the rest."""
    config = Path(model) / "config.json"
    if not config.is_file():
        return {}
    try:
        model_type = str(json.loads(config.read_text(encoding="utf-8")).get("model_type", ""))
    except (OSError, ValueError, AttributeError):
        return {}
    return {} if model_type in _MISTRAL_TYPES else {"fix_mistral_regex": False}


@functools.lru_cache(maxsize=2)
def load_local_lm(model: str, device: str, dtype: str, revision: str | None = None) -> LoadedLM:
    """Load (once per process) an instruct causal LM and its tokenizer through transformers' Auto classes."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype), "revision": revision}
    if device.startswith("cuda"):
        kwargs["device_map"] = device  # load straight onto the GPU (no full copy in host RAM)
    try:
        tokenizer: Any = AutoTokenizer.from_pretrained(model, revision=revision, **_tokenizer_kwargs(model))
        lm: Any = AutoModelForCausalLM.from_pretrained(model, **kwargs)
    except (OSError, ValueError, TypeError) as exc:  # missing/incomplete files, not cached and offline, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = (
            "is it a complete transformers checkpoint (config, weights, tokenizer files)?"
            if Path(model).is_dir()
            else f"fetch it with `qwen-dub models pull --translator local --translator-model {model}`, "
            "or pass a local directory"
        )
        raise ConfigError(f"cannot load local translation model {model!r}: {reason} ({hint})") from None
    if not device.startswith("cuda"):
        lm.to(device)
    lm.eval()
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"model {model!r} has no chat template; use an instruction-tuned (chat) model")

    tokenizer.padding_side = "left"  # decoder-only batching: prompts end where generation starts
    eos_ids: list[int] = []
    for candidate in (lm.generation_config.eos_token_id, tokenizer.eos_token_id):
        for token_id in candidate if isinstance(candidate, list) else [candidate]:
            if isinstance(token_id, int) and token_id not in eos_ids:
                eos_ids.append(token_id)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id and im_end not in eos_ids:
        eos_ids.append(im_end)
    if not eos_ids:
        raise ConfigError(f"model {model!r} defines no end-of-sequence token")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(eos_ids[0])
    return LoadedLM(lm, tokenizer, device, dtype, tuple(eos_ids), int(tokenizer.pad_token_id))


# -------------------------------------------------------------------------------------- translator


class LocalLLMTranslator:
    """Translator route "local": a chat LLM run in this process, batched."""

    def __init__(
        self,
        *,
        model: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        params: GenerationParams | None = None,
        revision: str | None = None,
        route: str = LOCAL,
    ) -> None:
        self.route = route
        if batch_size < 1:
            raise ConfigError(f"translation batch size must be at least 1, got {batch_size}")
        self.device = device or default_device()
        self.dtype = dtype or default_dtype(self.device)
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"unsupported dtype {self.dtype!r} (float32, bfloat16 or float16)")
        self.model, self.local_dir = resolve_model(model or default_model(self.device))
        self.revision = revision
        self.batch_size = batch_size
        self.params = params or GenerationParams()
        self._generate_lock = threading.Lock()  # one generate at a time: the stage may call from threads

    # -- protocol

    def identity(self) -> dict[str, Any]:
        model = f"local-dir:{fingerprint_directory(self.local_dir)}" if self.local_dir else self.model
        return {
            "route": self.route,
            "model": model,
            "revision": self.revision or "",
            "dtype": self.dtype,  # bf16 and fp32 greedy outputs can differ
            "prompt": PROMPT_VERSION,
            "generation": self.params.as_dict(),
        }

    def translate(
        self,
        text: str,
        source: Language | None,
        target: Language,
        context: Sequence[tuple[str, str]] = (),
        keep: Mapping[str, str] | None = None,
    ) -> str:
        item = TranslationItem(text, previous=[s for s, _ in context], glossary=dict(keep or {}))
        return self.translate_batch([item], source, target)[0]

    # -- batch API

    def load(self) -> LoadedLM:
        """Load the model and tokenizer now (once per process); ConfigError when they cannot be loaded.
        Optional: the first line that needs translating loads them anyway."""
        return load_local_lm(self.model, self.device, self.dtype, self.revision)

    @property
    def lm(self) -> LoadedLM:
        """The loaded model and tokenizer (loaded on first use, shared by the process)."""
        return self.load()

    def translate_batch(
        self, items: Sequence[TranslationItem], source: Language | None, target: Language
    ) -> list[str]:
        """Translate every item, `batch_size` per generate call; results in input order.

        Raises UpstreamError(code="EmptyTranslation") naming the line(s) whose translation came back empty.
        """
        completions = self.complete(items, source, target)
        results: list[str] = []
        empty: list[int] = []
        for position, (item, completion) in enumerate(zip(items, completions, strict=True)):
            text = parse_translation(
                completion.raw,
                source_text=item.text,
                source_name=source.name if source else None,
                target_name=target.name,
            )
            if not text:
                empty.append(item.index if item.index is not None else position)
            results.append(text)
        if empty:
            which = f"line {empty[0]}" if len(empty) == 1 else "lines " + ", ".join(map(str, empty))
            detail = f"the local model returned no {target.name} translation for {which}"
            raise UpstreamError(f"local translation failed: {detail}", code="EmptyTranslation", detail=detail)
        return results

    def render_prompts(
        self, items: Sequence[TranslationItem], source: Language | None, target: Language
    ) -> list[str]:
        """The chat-template-rendered prompt text for each item (what the model is fed)."""
        tokenizer = self.lm.tokenizer
        return [
            tokenizer.apply_chat_template(
                build_messages(item, source, target),
                tokenize=False,
                add_generation_prompt=True,
                enable_thinking=False,  # Qwen3-style templates: no reasoning block; ignored by others
            )
            for item in items
        ]

    def token_limit(self, item: TranslationItem) -> int:
        """max_new_tokens for one item: from the source's token count, tightened by the length budget."""
        p = self.params
        source_tokens = len(self.lm.tokenizer(item.text, add_special_tokens=False)["input_ids"])
        limit = math.ceil(p.tokens_per_source_token * source_tokens) + p.token_slack
        if item.max_chars is not None:
            limit = min(limit, math.ceil(p.tokens_per_budget_char * item.max_chars) + p.token_slack)
        return max(1, min(limit, p.max_new_tokens_cap))

    def complete(
        self,
        items: Sequence[TranslationItem],
        source: Language | None,
        target: Language,
        *,
        batch_size: int | None = None,
    ) -> list[Completion]:
        """Raw completions, one `model.generate` call per chunk of `batch_size` items; input order kept.

        Items are grouped by token limit, then prompt length, before chunking (fewer wasted decoding steps and
        less padding); each result is independent of its batch (see the module docstring), so the grouping
        changes no output.
        """
        if not items:
            return []
        size = batch_size or self.batch_size
        prompts = self.render_prompts(items, source, target)
        limits = [self.token_limit(item) for item in items]
        order = sorted(range(len(items)), key=lambda i: (limits[i], len(prompts[i])))
        results: list[Completion | None] = [None] * len(items)
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            outputs = self._generate_chunk([prompts[i] for i in chunk], [limits[i] for i in chunk])
            for i, completion in zip(chunk, outputs, strict=True):
                results[i] = completion
        return [c for c in results if c is not None]

    def _generate_chunk(self, prompts: list[str], limits: list[int]) -> list[Completion]:
        import torch
        from transformers import GenerationConfig

        lm = self.lm
        batch = lm.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        batch = {k: v.to(lm.model.device) for k, v in batch.items()}
        config = GenerationConfig(
            do_sample=False,
            max_new_tokens=max(limits),
            repetition_penalty=self.params.repetition_penalty,
            eos_token_id=list(lm.eos_token_ids),
            pad_token_id=lm.pad_token_id,
        )
        with self._generate_lock, torch.inference_mode():
            output = lm.model.generate(**batch, generation_config=config, use_model_defaults=False)
        new_tokens = output[:, batch["input_ids"].shape[1] :].cpu()
        return [self._decode(row, limit) for row, limit in zip(new_tokens, limits, strict=True)]

    def _decode(self, row: torch.Tensor, limit: int) -> Completion:
        ids = row.tolist()[:limit]
        eos = set(self.lm.eos_token_ids)
        end = next((n for n, token in enumerate(ids) if token in eos), None)
        finished = end is not None
        ids = ids[:end] if end is not None else ids
        raw = self.lm.tokenizer.decode(ids, skip_special_tokens=True)
        return Completion(raw=raw, new_tokens=len(ids), finished=finished)


# --------------------------------------------------------------------------------------- benchmark


def measure_throughput(
    translator: LocalLLMTranslator,
    items: Sequence[TranslationItem],
    source: Language | None,
    target: Language,
    *,
    batch_size: int | None = None,
    warmup: bool = True,
) -> ThroughputResult:
    """Lines per second of `translator.complete` over `items` at `batch_size` (default: the translator's).

    Model loading and, with `warmup`, the first generate call's one-off costs are not timed. Generation only,
    not parsing: parsing is negligible, and a random test model's gibberish may parse to nothing."""
    size = batch_size or translator.batch_size
    translator.load()  # outside the timed region
    if warmup:
        translator.complete(items[:size], source, target, batch_size=size)
    start = time.perf_counter()
    translator.complete(items, source, target, batch_size=size)
    seconds = time.perf_counter() - start
    return ThroughputResult(lines=len(items), batch_size=size, seconds=seconds)
