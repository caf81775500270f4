"""The local LLM translator on a tiny random Qwen2 with the real Qwen tokenizer, loaded by the real loaders.

The random model writes gibberish: these tests check prompts, batching, padding, decoding and error handling,
not translation quality. The output parser is tested on its own with realistic instruct-model replies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.errors import ConfigError, UpstreamError
from core.languages import LANGUAGES, get_language
from models.local_translator import (
    PROMPT_VERSION,
    GenerationParams,
    LocalLLMTranslator,
    TranslationItem,
    build_messages,
    fingerprint_directory,
    load_local_lm,
    measure_throughput,
    parse_translation,
)
from tests.tiny_qwen_lm import build_tiny_qwen_lm

EN, JA, DE = get_language("en"), get_language("ja"), get_language("de")


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen_lm(tmp_path_factory.mktemp("tiny-qwen-lm"))


# Short generations keep the file fast on two cores; the rule itself is tested with the default parameters.
FAST = GenerationParams(tokens_per_source_token=1.0, token_slack=6)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """A 32-wide model gains nothing from intra-op threads, and OpenMP spin-waits make two threads several
    times slower whenever the two cores are shared with other work."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def translator(tiny_lm_dir: Path, one_thread: None) -> LocalLLMTranslator:
    return LocalLLMTranslator(model=str(tiny_lm_dir), device="cpu", params=FAST)


def count_generate_calls(translator: LocalLLMTranslator, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Wrap the loaded model's generate; returns the list of batch sizes it was called with."""
    model = translator.lm.model
    real = model.generate
    calls: list[int] = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(int(kwargs["input_ids"].shape[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "generate", counting)
    return calls


# ------------------------------------------------------------------------------------------------ prompts


def test_prompt_carries_context_budget_glossary_and_languages(translator: LocalLLMTranslator) -> None:
    item = TranslationItem(
        "The lighthouse keeper walks to the harbour.",
        previous=("It was a stormy night.", "Nobody slept."),
        next="Then the lamp went out.",
        max_chars=42,
        glossary={"lighthouse keeper": "灯台守", "harbour": "港", "castle": "城"},
    )
    (prompt,) = translator.render_prompts([item], EN, JA)
    # rendered by the checkpoint's ChatML template: system, user, then the assistant turn is opened
    assert prompt.startswith("<|im_start|>system\n") and "<|im_start|>user\n" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    system, user = prompt.split("<|im_start|>user\n")
    assert "from English into Japanese" in system and "Japanese translation of that line only" in system
    assert "context only (do not translate them):\n- It was a stormy night.\n- Nobody slept." in user
    assert "Following lines, for context only (do not translate them):\n- Then the lamp went out." in user
    assert "- lighthouse keeper -> 灯台守" in user and "- harbour -> 港" in user
    assert "城" not in user  # glossary terms absent from the line stay out of the prompt
    assert "at most 42 characters" in user
    assert prompt.endswith(
        "into Japanese:\nThe lighthouse keeper walks to the harbour.<|im_end|>\n<|im_start|>assistant\n"
    )
    # everything that shaped the prompt is in the item's cache-key fields; the unused glossary term is not
    assert item.key_fields() == {
        "text": item.text,
        "previous": ["It was a stormy night.", "Nobody slept."],
        "next": ["Then the lamp went out."],
        "max_chars": 42,
        "glossary": {"lighthouse keeper": "灯台守", "harbour": "港"},
    }
    assert TranslationItem(item.text, index=3).key_fields() == TranslationItem(item.text).key_fields()


def test_prompt_without_extras_and_with_unknown_source(translator: LocalLLMTranslator) -> None:
    (prompt,) = translator.render_prompts([TranslationItem("Bonjour.")], None, DE)
    assert "detect it" in prompt and "into German" in prompt
    for absent in ("context only", "Glossary", "characters"):
        assert absent not in prompt


@pytest.mark.parametrize("code", sorted(LANGUAGES))
def test_every_language_is_named_in_the_prompt(code: str) -> None:
    target = get_language(code)
    source = EN if code != "en" else get_language("zh")
    system, user = build_messages(TranslationItem("text"), source, target)
    assert f"from {source.name} into {target.name}" in system["content"]
    assert f"into {target.name}:" in user["content"] and system["role"] == "system" and user["role"] == "user"


# ------------------------------------------------------------------------------------------------ generation


def test_a_batch_of_five_is_one_generate_call(
    translator: LocalLLMTranslator, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = ["Hello.", "Where are you going?", "The storm is coming tonight.", "Yes.", "I never said that!"]
    calls = count_generate_calls(translator, monkeypatch)
    out = translator.translate_batch([TranslationItem(t) for t in texts], EN, JA)
    assert calls == [5]
    assert len(out) == 5 and all(isinstance(s, str) and s for s in out)

    completions = translator.complete([TranslationItem(t) for t in texts], EN, JA)
    assert calls == [5, 5]
    for text, completion in zip(texts, completions, strict=True):
        # only the new tokens are decoded: no prompt, no chat markup, no special tokens
        assert "<|im_start|>" not in completion.raw and "<|im_end|>" not in completion.raw
        assert "professional translator" not in completion.raw and "Translate this" not in completion.raw
        assert not completion.raw.startswith(text)
        # the tiny model never emits end-of-turn: every line runs to its own limit, whatever the batch's
        assert not completion.finished
        assert completion.new_tokens == translator.token_limit(TranslationItem(text))


def test_batch_size_splits_generate_calls(
    translator: LocalLLMTranslator, monkeypatch: pytest.MonkeyPatch
) -> None:
    translator.batch_size = 2
    calls = count_generate_calls(translator, monkeypatch)
    assert (
        len(translator.translate_batch([TranslationItem(f"Line number {n}.") for n in range(5)], EN, DE)) == 5
    )
    assert sorted(calls) == [1, 2, 2]
    assert translator.translate_batch([], EN, DE) == [] and len(calls) == 3


def test_translate_is_a_single_item_batch(
    translator: LocalLLMTranslator, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_generate_calls(translator, monkeypatch)
    out = translator.translate("Good morning.", EN, DE)
    assert calls == [1] and isinstance(out, str) and out
    assert out == translator.translate_batch([TranslationItem("Good morning.")], EN, DE)[0]


def test_left_padding_gives_the_same_output_alone_and_in_a_batch(translator: LocalLLMTranslator) -> None:
    lm = translator.lm
    assert lm.tokenizer.padding_side == "left" and lm.tokenizer.pad_token_id == lm.pad_token_id
    assert not lm.model.training
    short = TranslationItem("Yes.")
    long = TranslationItem(
        "When the lighthouse keeper finally reached the harbour, the boats had long since gone out to sea.",
        previous=("It was a stormy night.",),
        max_chars=120,
    )
    prompts = translator.render_prompts([short, long], EN, JA)
    lengths = [len(lm.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    assert lengths[1] - lengths[0] > 20  # the short prompt really is padded in the batch
    assert translator.token_limit(long) > translator.token_limit(short)

    (alone,) = translator.complete([short], EN, JA)
    together = translator.complete([long, short], EN, JA)
    assert (
        together[1] == alone
    )  # greedy + attention mask + mask-derived position ids: padding changes nothing
    assert together[0] == translator.complete([long], EN, JA)[0]


def test_model_is_loaded_once_per_process(tiny_lm_dir: Path) -> None:
    a = LocalLLMTranslator(model=str(tiny_lm_dir), device="cpu", batch_size=1)
    b = LocalLLMTranslator(model=str(tiny_lm_dir) + "/", device="cpu", dtype="float32")
    assert a.lm is b.lm
    assert a.lm is load_local_lm(str(tiny_lm_dir.resolve()), "cpu", "float32", None)
    assert a.lm.dtype == "float32" and str(next(a.lm.model.parameters()).dtype) == "torch.float32"


def test_token_limit_follows_text_and_budget(tiny_lm_dir: Path) -> None:
    translator = LocalLLMTranslator(model=str(tiny_lm_dir), device="cpu")
    text = "The storm is coming tonight, and the boats are still out at sea."
    free = translator.token_limit(TranslationItem(text))
    tight = translator.token_limit(TranslationItem(text, max_chars=10))
    assert free > translator.token_limit(TranslationItem("Yes."))
    assert tight == 15 + translator.params.token_slack < free


def test_throughput_is_measured(translator: LocalLLMTranslator) -> None:
    items = [TranslationItem(f"Line {n}.") for n in range(4)]
    for size in (1, 4):
        result = measure_throughput(translator, items, EN, JA, batch_size=size, warmup=False)
        assert result.lines == 4 and result.batch_size == size and result.lines_per_second > 0
    assert translator.batch_size == 8  # the translator is left as it was


# ------------------------------------------------------------------------------------------------ errors


def _blank_rows(translator: LocalLLMTranslator, monkeypatch: pytest.MonkeyPatch, rows: set[int]) -> None:
    """Make the real generate answer end-of-turn straight away for some rows of the batch."""
    model = translator.lm.model
    real: Callable[..., Any] = model.generate
    eos = translator.lm.eos_token_ids[0]

    def generate(*args: Any, **kwargs: Any) -> Any:
        output = real(*args, **kwargs)
        prompt_length = kwargs["input_ids"].shape[1]
        for row in rows:
            output[row, prompt_length:] = eos
        return output

    monkeypatch.setattr(model, "generate", generate)


def test_empty_output_names_the_line_not_the_text(
    translator: LocalLLMTranslator, monkeypatch: pytest.MonkeyPatch
) -> None:
    _blank_rows(translator, monkeypatch, {0})
    secret = "Confidential script line"
    with pytest.raises(UpstreamError) as info:
        translator.translate_batch([TranslationItem(secret, index=17)], EN, DE)
    assert info.value.code == "EmptyTranslation"
    assert "line 17" in str(info.value) and "line 17" in info.value.detail
    assert secret not in str(info.value) and secret not in info.value.detail

    with pytest.raises(UpstreamError, match=r"for line 0\b") as info:
        translator.translate(secret, EN, DE)
    assert secret not in str(info.value)


def test_reasoning_only_output_is_empty(
    translator: LocalLLMTranslator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Qwen3-style reply cut inside its <think> block leaves nothing to use: EmptyTranslation."""
    think = translator.lm.tokenizer("<think>\nThe user wants German.", add_special_tokens=False)["input_ids"]
    real = translator.lm.model.generate

    def generate(*args: Any, **kwargs: Any) -> Any:
        output = real(*args, **kwargs)
        prompt_length = kwargs["input_ids"].shape[1]
        output[0, prompt_length : prompt_length + len(think)] = output.new_tensor(think)
        output[0, prompt_length + len(think) :] = translator.lm.eos_token_ids[0]
        return output

    monkeypatch.setattr(translator.lm.model, "generate", generate)
    with pytest.raises(UpstreamError, match="for line 4$") as info:
        translator.translate_batch([TranslationItem("One two three four five six seven.", index=4)], EN, DE)
    assert info.value.code == "EmptyTranslation"


def test_local_directory_without_config_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 16)
    with pytest.raises(ConfigError, match="no config.json"):
        LocalLLMTranslator(model=str(tmp_path), device="cpu")
    with pytest.raises(ConfigError, match="is a file"):
        LocalLLMTranslator(model=str(tmp_path / "model.safetensors"), device="cpu")
    with pytest.raises(ConfigError, match="not found"):
        LocalLLMTranslator(model=str(tmp_path / "missing"), device="cpu")
    with pytest.raises(ConfigError, match="not found"):
        LocalLLMTranslator(model="not a model id", device="cpu")
    with pytest.raises(ConfigError, match="batch size"):
        LocalLLMTranslator(model=str(tmp_path), device="cpu", batch_size=0)


def test_incomplete_checkpoint_is_a_config_error_at_load(tmp_path: Path, tiny_lm_dir: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "qwen2"}')
    translator = LocalLLMTranslator(model=str(tmp_path), device="cpu")  # checked lazily: nothing loaded yet
    with pytest.raises(ConfigError, match="complete transformers checkpoint"):
        translator.load()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        (tmp_path / name).symlink_to(tiny_lm_dir / name)
    with pytest.raises(ConfigError, match="no file named"):  # tokenizer found, weights missing
        translator.translate("Hello.", EN, DE)


def test_defaults_per_device() -> None:
    gpu = LocalLLMTranslator(device="cuda")  # nothing is loaded until the first line needs translating
    cpu = LocalLLMTranslator(device="cpu")
    assert gpu.model == "Qwen/Qwen2.5-7B-Instruct" and gpu.dtype in ("bfloat16", "float16")
    assert (cpu.model, cpu.dtype) == ("Qwen/Qwen2.5-1.5B-Instruct", "float32")
    assert cpu.identity()["model"] == "Qwen/Qwen2.5-1.5B-Instruct"


# ------------------------------------------------------------------------------------------------ identity


def test_identity_fingerprints_a_local_directory(tmp_path: Path, translator: LocalLLMTranslator) -> None:
    identity = translator.identity()
    assert identity["route"] == "local" and identity["prompt"] == PROMPT_VERSION
    assert identity["model"].startswith("local-dir:") and identity["dtype"] == "float32"
    assert identity["generation"]["do_sample"] is False

    (tmp_path / "config.json").write_text('{"hidden_size": 32}')
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 100)
    (tmp_path / "README.md").write_text("not part of the fingerprint")
    first = fingerprint_directory(tmp_path)
    (tmp_path / "README.md").write_text("edited")
    assert fingerprint_directory(tmp_path) == first
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 101)
    second = fingerprint_directory(tmp_path)
    (tmp_path / "config.json").write_text('{"hidden_size": 64}')
    assert len({first, second, fingerprint_directory(tmp_path)}) == 3
    assert LocalLLMTranslator(model=str(tmp_path), device="cpu").identity()["model"] == (
        f"local-dir:{fingerprint_directory(tmp_path)}"
    )


# ------------------------------------------------------------------------------------------------ parsing

PARSE_CASES = [
    # (what the model wrote, source line, expected translation)
    ("Hallo, wie geht's?", "Hello, how are you?", "Hallo, wie geht's?"),
    ("  Hallo.  \n", "Hello.", "Hallo."),
    ("Here is the translation:\n\nHallo.", "Hello.", "Hallo."),
    ("Sure! Here's the German translation:\nHallo.\n\nI hope this helps!", "Hello.", "Hallo."),
    ("Here is the translation: Hallo.", "Hello.", "Hallo."),
    ("Translation: Hallo.", "Hello.", "Hallo."),
    ("**Translation:** Hallo.", "Hello.", "Hallo."),
    ("German: Hallo.", "Hello.", "Hallo."),
    ("German translation: „Hallo.“", "Hello.", "Hallo."),
    ('"Hallo."', "Hello.", "Hallo."),
    ("“Hallo.”", "Hello.", "Hallo."),
    ("«Bonjour.»", "Hello.", "Bonjour."),
    ("「こんにちは。」", "Hello.", "こんにちは。"),
    ('"Hallo," sagte er.', '"Hello," he said.', '"Hallo," sagte er.'),
    ('"Hallo."', '"Hello."', '"Hallo."'),  # the source was quoted: keep the quotes
    ("```\nHallo.\n```", "Hello.", "Hallo."),
    ("Here you go:\n```text\nHallo.\n```\nLet me know if you need more.", "Hello.", "Hallo."),
    ("`Hallo.`", "Hello.", "Hallo."),
    ("Hallo. (informal greeting)", "Hello.", "Hallo."),
    ("こんにちは。（直訳：良い日）", "Hello.", "こんにちは。"),
    ("Ruf mich an (bitte).", "Call me (please).", "Ruf mich an (bitte)."),  # source ends with one too
    ("Hallo.\n\nNote: this is the informal form.", "Hello.", "Hallo."),
    ("Hallo.\nNote: informal.", "Hello.", "Hallo."),
    ("Hallo.\n(Literally: good day)", "Hello.", "Hallo."),
    ("Hello.\nHallo.", "Hello.", "Hallo."),  # source echoed first
    ("English: Hello.\nGerman: Hallo.", "Hello.", "Hallo."),
    ("Original: Hello.\nTranslation: Hallo.", "Hello.", "Hallo."),
    ("Hello.\n\nHallo.", "Hello.", "Hallo."),
    ("<think>\nThe user wants German. Hello is Hallo.\n</think>\n\nHallo.", "Hello.", "Hallo."),
    ("<think>\n\n</think>\n\nHallo.", "Hello.", "Hallo."),
    ("Okay, the user wants German.\n</think>\nHallo.", "Hello.", "Hallo."),  # template opened the block
    ("<think>\nLet me think about this", "Hello.", ""),  # truncated reasoning: nothing usable
    ("Hallo.<|im_end|>", "Hello.", "Hallo."),
    (
        "こんにちは、元気ですか？\nKonnichiwa, genki desu ka?",
        "Hello, how are you?",
        "こんにちは、元気ですか？",
    ),
    ("Hallo.\nZeile zwei.", "Hello.\nLine two.", "Hallo.\nZeile zwei."),  # two-line source keeps two lines
    ("Achtung: Gefahr!", "Warning: danger!", "Achtung: Gefahr!"),  # a colon in the line is not a label
    ("Übersetzung: erledigt.", "Translation: done.", "Übersetzung: erledigt."),
    ("Result: we won.", "Result: we won.", "Result: we won."),  # the source's own label stays
    ("OK.", "OK.", "OK."),  # an echo alone is kept (names, interjections)
    ("", "Hello.", ""),
    ("   \n\n", "Hello.", ""),
    ('Translation: ""', "Hello.", ""),  # empty quotes are an empty answer
]


@pytest.mark.parametrize(("raw", "source", "expected"), PARSE_CASES)
def test_parse_translation(raw: str, source: str, expected: str) -> None:
    assert parse_translation(raw, source_text=source, source_name="English", target_name="German") == expected


def test_parse_translation_without_context() -> None:
    assert parse_translation("Translation: Hallo.") == "Hallo."
    assert parse_translation("Hallo.\nNote: informal.") == "Hallo."
    assert parse_translation("Japanese: こんにちは", target_name="Japanese") == "こんにちは"
