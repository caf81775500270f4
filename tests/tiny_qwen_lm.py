"""A tiny random Qwen2 causal LM with the REAL Qwen tokenizer, saved like a hub checkpoint.

No weights can be downloaded here, so tests build this at test time and load it through transformers' normal
loaders (`AutoModelForCausalLM` / `AutoTokenizer.from_pretrained(directory)`), like a real instruct model:

- the tokenizer is the real Qwen2 byte-level BPE (151,643 tokens), rebuilt offline from the `qwen.tiktoken`
  file that the dashscope SDK bundles, plus the three ChatML special tokens at their real ids;
- the chat template is plain ChatML (what Qwen2.5-Instruct renders, minus its default system prompt);
- the model is a 1-layer, 32-wide Qwen2ForCausalLM (about 5 M parameters, almost all in the tied embedding),
  initialised 10x wider than usual: with the default 0.02 the residual stream dominates and every prompt
  yields the same newlines; at 0.2 the output depends on the whole prompt (so padding mistakes would show).

The embedding rows of the special tokens are zeroed so that greedy decoding never picks them (their logit is
exactly 0, the best random logit is positive): generations always run to `max_new_tokens`, which keeps tests
deterministic. Call `build_tiny_qwen_lm(directory)` from a session fixture (about 10 s on 2 idle cores).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

QWEN_PRETOKENIZE_PATTERN = (  # Qwen2's pre-tokenizer split (the pattern that goes with qwen.tiktoken)
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")  # ids 151643, 151644, 151645 as in Qwen2
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def qwen_tiktoken_path() -> Path:
    """The real Qwen BPE ranks that the dashscope SDK ships."""
    import dashscope

    path = Path(dashscope.__file__).parent / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise FileNotFoundError(f"dashscope no longer ships {path}")
    return path


def build_tiny_qwen_lm(directory: Path, *, seed: int = 0) -> Path:
    """Save a tiny random Qwen2ForCausalLM and the real Qwen tokenizer into `directory`; return it."""
    import torch
    from tokenizers import AddedToken
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2TokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    directory.mkdir(parents=True, exist_ok=True)
    backend = TikTokenConverter(
        vocab_file=str(qwen_tiktoken_path()), pattern=QWEN_PRETOKENIZE_PATTERN, additional_special_tokens=[]
    ).converted()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tokenizer = Qwen2TokenizerFast(
        tokenizer_object=backend,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHATML_TEMPLATE,
    )
    special_ids = [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    assert special_ids == [151643, 151644, 151645], special_ids

    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        initializer_range=0.2,  # 10x the default, so that the output varies with the whole prompt
        bos_token_id=special_ids[0],
        eos_token_id=special_ids[2],
        pad_token_id=special_ids[0],
    )
    torch.manual_seed(seed)
    model: Any = Qwen2ForCausalLM(config)
    # Tokens without a letter (punctuation, spaces, digits) never win the greedy pick either: a random
    # model that answers "、。" would rightly be refused by the translation stage's checks, and the
    # tests that run the whole flow through this model need its replies to look like words.
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    wordless = [i for i, text in enumerate(texts) if not any(ch.isalpha() for ch in text)]
    with torch.no_grad():
        model.get_input_embeddings().weight[special_ids + wordless] = 0.0
    model.generation_config.eos_token_id = [special_ids[2], special_ids[0]]
    model.generation_config.pad_token_id = special_ids[0]
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


if __name__ == "__main__":  # pragma: no cover - manual use: python -m tests.tiny_qwen_lm OUTDIR
    import sys
    import time

    t0 = time.perf_counter()
    out = build_tiny_qwen_lm(Path(sys.argv[1] if len(sys.argv) > 1 else "out/tiny_qwen_lm"))
    print(f"saved {sorted(p.name for p in out.iterdir())} in {time.perf_counter() - t0:.1f}s")
