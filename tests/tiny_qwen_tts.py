"""Tiny, randomly initialised Qwen3-TTS checkpoints for tests (no download, a few seconds to build).

`build_tiny_qwen_tts(out_dir)` writes one directory per model type (custom_voice, base, voice_design), each
with config.json, weights, generation_config.json, a Qwen2-style text tokenizer and a tiny 12 Hz speech
tokenizer under speech_tokenizer/, laid out exactly like the published checkpoints so that the REAL
`qwen_tts.Qwen3TTSModel.from_pretrained(dir, ...)` loads them. Audio is noise, but every property the
adapter relies on is real: 24 kHz output, 1920 samples per codec frame, batching, speaker and language
tables, voice-clone prompts, max_new_tokens.

Gotchas baked in (found with the prototype in shared/examples/tiny_qwen_tts.py):
- the text tokenizer's pre-tokenizer must be a Sequence (qwen_tts passes fix_mistral_regex=True, which
  rewrites element [0]) and "<|im_start|>assistant\\n" must be exactly 3 tokens (qwen_tts slices [:, :3]);
- Qwen3TTSSpeakerEncoderConfig serialises an empty "model_type" that its own __init__ rejects on reload;
- codec ids must stay below talker vocab - 1024 (the rest is suppressed except EOS);
- the decoder's upsampling product must be 1920 (24 kHz / 12.5 Hz).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

MODEL_TYPES = ("custom_voice", "base", "voice_design")
CODEBOOK = 2048  # codec ids 0..2047
NUM_QUANTIZERS = 16
HIDDEN = 64
# The nine published CustomVoice speakers; the two dialect speakers map to dialect language ids as in the
# real checkpoint (dialect entries are not listed by get_supported_languages()).
SPEAKERS = ("vivian", "serena", "uncle_fu", "dylan", "eric", "ryan", "aiden", "ono_anna", "sohee")
DIALECTS = {"dylan": "beijing_dialect", "eric": "sichuan_dialect"}
LANGUAGES = (
    "chinese", "english", "german", "italian", "portuguese",
    "spanish", "japanese", "korean", "french", "russian",
)  # fmt: skip
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|tts_pad|>",
    "<|tts_text_bos|>",
    "<|tts_text_eod|>",
)
_QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_CORPUS = (
    "<|im_start|>assistant\nHello world, this is a test.<|im_end|>\n",
    "<|im_start|>user\nSpeak in a calm, warm, female voice.<|im_end|>\n",
    "The quick brown fox jumps over the lazy dog. 你好，世界。Bonjour le monde. こんにちは 안녕하세요 Привет",
)


def _text_tokenizer():  # -> transformers.Qwen2TokenizerFast
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(_CORPUS) * 20, trainer)
    hf_tok = Qwen2TokenizerFast(
        tokenizer_object=tok,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    assert len(hf_tok("<|im_start|>assistant\n")["input_ids"]) == 3
    return hf_tok


def _save_speech_tokenizer(path: Path, audible: bool = False) -> None:
    import torch
    from qwen_tts.core import Qwen3TTSTokenizerV2Config, Qwen3TTSTokenizerV2Model
    from transformers import EncodecFeatureExtractor

    config = Qwen3TTSTokenizerV2Config(
        encoder_config=dict(  # Mimi: 8*6*5*4 = 960 samples -> 25 Hz, then /2 -> 12.5 Hz
            hidden_size=32, num_filters=4, upsampling_ratios=[8, 6, 5, 4], upsample_groups=32,
            codebook_size=CODEBOOK, codebook_dim=16, vector_quantization_hidden_dimension=16,
            num_quantizers=NUM_QUANTIZERS, num_semantic_quantizers=1, num_hidden_layers=1,
            intermediate_size=64, num_attention_heads=2, num_key_value_heads=2, head_dim=16,
            sliding_window=250,
        ),
        decoder_config=dict(  # 8*5*4*3 * 2*2 = 1920 samples per frame
            codebook_size=CODEBOOK, codebook_dim=32, hidden_size=32, latent_dim=32, num_attention_heads=2,
            num_key_value_heads=2, intermediate_size=64, num_hidden_layers=1, num_quantizers=NUM_QUANTIZERS,
            upsample_rates=[8, 5, 4, 3], upsampling_ratios=[2, 2], decoder_dim=64, sliding_window=72,
        ),
        encoder_valid_num_quantizers=NUM_QUANTIZERS,
        input_sample_rate=24000,
        output_sample_rate=24000,
        decode_upsample_rate=1920,
        encode_downsample_rate=1920,
    )  # fmt: skip
    model = Qwen3TTSTokenizerV2Model(config)
    if audible:  # the codebooks start at zero (every code decodes to silence): make codes sound different
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.endswith("_codebook.embedding_sum"):
                    param.normal_()
            # random weights leave the output around 1e-8: scale the last (linear) conv to speech level
            codes = torch.randint(0, CODEBOOK, (1, NUM_QUANTIZERS, 25))
            level = float(model.decoder(codes).std())
            model.decoder.decoder[-1].conv.weight.mul_(0.1 / level)
    model.save_pretrained(str(path))
    # Qwen3TTSTokenizer.encode() runs this feature extractor and reads its padding_mask.
    EncodecFeatureExtractor(
        feature_size=1, sampling_rate=24000, padding_value=0.0, return_attention_mask=True
    ).save_pretrained(str(path))


def _model_config(model_type: str, token_ids: dict[str, int], text_vocab: int, model_size: str):
    from qwen_tts.core.models import Qwen3TTSConfig

    languages = {name: 2050 + i for i, name in enumerate(LANGUAGES)}
    languages.update({dialect: 2070 + i for i, dialect in enumerate(sorted(DIALECTS.values()))})
    speakers = {name: 3000 + i for i, name in enumerate(SPEAKERS)}
    talker = dict(
        vocab_size=CODEBOOK + 1024, hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        rope_scaling={"rope_type": "default", "mrope_section": [4, 2, 2], "interleaved": True},
        text_hidden_size=HIDDEN, text_vocab_size=text_vocab, num_code_groups=NUM_QUANTIZERS,
        codec_pad_id=2148, codec_bos_id=2149, codec_eos_token_id=2150, codec_think_id=2154,
        codec_nothink_id=2155, codec_think_bos_id=2156, codec_think_eos_id=2157,
        codec_language_id=languages, spk_id=speakers,
        spk_is_dialect={name: DIALECTS.get(name, False) for name in SPEAKERS},
        code_predictor_config=dict(
            vocab_size=CODEBOOK, hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=1,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_code_groups=NUM_QUANTIZERS,
        ),
    )  # fmt: skip
    speaker_encoder = dict(
        mel_dim=128, enc_dim=HIDDEN, enc_channels=[32, 32, 32, 32, 96], enc_attention_channels=16,
        enc_res2net_scale=8, enc_se_channels=16, sample_rate=24000,
    )  # fmt: skip
    return Qwen3TTSConfig(
        talker_config=talker,
        speaker_encoder_config=speaker_encoder,
        tokenizer_type="qwen3_tts_tokenizer_12hz",
        tts_model_size=model_size,
        tts_model_type=model_type,
        im_start_token_id=token_ids["<|im_start|>"],
        im_end_token_id=token_ids["<|im_end|>"],
        tts_pad_token_id=token_ids["<|tts_pad|>"],
        tts_bos_token_id=token_ids["<|tts_text_bos|>"],
        tts_eos_token_id=token_ids["<|tts_text_eod|>"],
    )


def build_tiny_qwen_tts(
    out_dir: Path,
    model_types: Iterable[str] = MODEL_TYPES,
    *,
    max_new_tokens: int = 2048,
    model_size: str = "1b7",
    seed: int = 0,
    never_stop: bool = True,
    audible: bool = False,
) -> dict[str, Path]:
    """Write tiny checkpoints under out_dir/<model_type>/ and return {model_type: directory}.

    max_new_tokens goes into generation_config.json (the package default is 2048, as published).
    never_stop zeroes the talker's EOS output row: its logit is then 0 while about half of the 2048 codec
    logits are positive, so EOS is never among the top-k sampled and every clip runs to max_new_tokens
    (a deterministic stand-in for the real model's "missed EOS" failure, and lengths tests can rely on).
    audible gives the speech tokenizer random codebooks: by default they are zero, as the package initialises
    them, and every clip decodes to silence; audible clips differ with their codes (so with the seed)."""
    import torch
    from qwen_tts.core.models import Qwen3TTSForConditionalGeneration, Qwen3TTSProcessor

    torch.manual_seed(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _text_tokenizer()
    token_ids = {t: int(tokenizer.convert_tokens_to_ids(t)) for t in SPECIAL_TOKENS}
    speech_dir = out_dir / "_speech_tokenizer"
    _save_speech_tokenizer(speech_dir, audible)
    generation = dict(
        do_sample=True, top_k=50, top_p=1.0, temperature=0.9, repetition_penalty=1.05,
        subtalker_dosample=True, subtalker_top_k=50, subtalker_top_p=1.0, subtalker_temperature=0.9,
        max_new_tokens=max_new_tokens,
    )  # fmt: skip
    dirs: dict[str, Path] = {}
    for model_type in model_types:
        if model_type not in MODEL_TYPES:
            raise ValueError(f"unknown model type {model_type!r}")
        path = out_dir / model_type
        config = _model_config(model_type, token_ids, len(tokenizer), model_size)
        model = Qwen3TTSForConditionalGeneration(config)
        if never_stop:
            with torch.no_grad():
                model.talker.codec_head.weight[config.talker_config.codec_eos_token_id].zero_()
        model.save_pretrained(str(path))
        config_path = path / "config.json"
        saved = json.loads(config_path.read_text())
        saved["speaker_encoder_config"].pop("model_type", None)  # see module docstring
        config_path.write_text(json.dumps(saved, indent=2))
        Qwen3TTSProcessor(tokenizer=tokenizer).save_pretrained(str(path))
        (path / "generation_config.json").write_text(json.dumps(generation))
        shutil.copytree(speech_dir, path / "speech_tokenizer", dirs_exist_ok=True)
        dirs[model_type] = path
    shutil.rmtree(speech_dir)
    return dirs


if __name__ == "__main__":
    import sys
    import tempfile
    import time

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="tiny_qwen_tts_"))
    started = time.perf_counter()
    built = build_tiny_qwen_tts(target)
    print(f"built {sorted(built)} in {time.perf_counter() - started:.1f}s under {target}")
