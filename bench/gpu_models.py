"""Real-size models with random weights for bench.gpu, built and loaded through the real code.

No weights can be downloaded on the GPU machine, and speed and memory do not depend on the weights' values,
so every model here has the published architecture and random weights:

- Qwen3-TTS 12 Hz CustomVoice, 1.7B and 0.6B: the config is built like tests/tiny_qwen_tts.py's, scaled to
  the published sizes, saved with save_pretrained and loaded by the REAL
  `qwen_tts.Qwen3TTSModel.from_pretrained(dir, device_map=..., dtype=bfloat16, attn_implementation="sdpa")`.
  Sources of the numbers (the published config.json files, as quoted verbatim by third-party ports; the
  hub itself is out of reach here):
    * talker 1.7B: hidden 2048, intermediate 6144, 28 layers, 16 heads, 8 KV heads, head_dim 128, codec
      vocab 3072, text vocab 151936, text_hidden 2048, rope_theta 1e6, MRoPE sections [24, 20, 20]
      interleaved, position_id_per_seconds 13; code predictor hidden 1024, intermediate 3072, 5 layers,
      16/8 heads, head_dim 128, vocab 2048, 16 code groups: mlx-audio's Qwen3TTSConfigTests
      ("matching mlx-community/Qwen3-TTS-12Hz-1.7B-CustomVoice-bf16"), the same numbers in a Rust port's
      config test and in vLLM-style defaults (mrope [24, 20, 20]). One port's architecture note says
      intermediate 8192 for 1.7B; the two verbatim configs say 6144, used here.
    * talker 0.6B: hidden 1024, intermediate 3072, 28 layers, 16/8 heads, head_dim 128, text_hidden 2048,
      same code predictor: a Rust port's config test quoting Qwen3-TTS-12Hz-0.6B-CustomVoice/config.json,
      and qwen3-asr-swift's docs/tts-model.md table.
    * speaker and language ids (spk_id, codec_language_id with the two dialects, codec special ids
      2148-2157): the CustomVoice config quoted by mlx-audio's tests.
    * speech tokenizer decoder (Qwen3-TTS-Tokenizer-12Hz/config.json, decoder_config): latent_dim 1024,
      codebook_dim 512, codebook_size 2048, decoder_dim 1536, hidden 512, intermediate 1024, head_dim 64,
      16 heads, 16 KV heads, 8 layers, 16 quantizers, sliding_window 72, upsample_rates [8, 5, 4, 3],
      upsampling_ratios [2, 2], vector_quantization_hidden_dimension 512 (two ports quote it verbatim).
      The ENCODER (Mimi) config is transformers' MimiConfig defaults: not verified, and unused by
      CustomVoice synthesis (it encodes reference audio for voice cloning only).
  The text tokenizer is tests/tiny_qwen_tts.py's tiny BPE (the real 151k-token vocabulary is not
  available on that machine): a text becomes more tokens than with the real one, which lengthens only the
  prefill. EOS is suppressed exactly as there (the codec head's EOS row is zero), so every item runs to
  max_new_tokens: a fixed, known number of frames.
- Whisper large-v3 (d_model 1280, 32 + 32 layers, 20 heads, FFN 5120, 128 mel bins, vocab 51866; the
  published openai/whisper-large-v3 config) through transformers, fp16, sdpa.
- htdemucs: tests/tiny_demucs.full_size_kwargs() (the released architecture, 42 M parameters).
- A tiny CTranslate2 Whisper (converted here with ctranslate2's own TransformersConverter) to learn whether
  CTranslate2 runs on that GPU at all.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

# -- Qwen3-TTS -------------------------------------------------------------------------------------------

QWEN_SIZES: dict[str, dict[str, Any]] = {
    "1.7B": dict(
        tts_model_size="1b7", hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
        num_attention_heads=16, num_key_value_heads=8, head_dim=128, text_hidden_size=2048,
    ),
    "0.6B": dict(
        tts_model_size="0b6", hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
        num_attention_heads=16, num_key_value_heads=8, head_dim=128, text_hidden_size=2048,
    ),
}  # fmt: skip
CODE_PREDICTOR = dict(
    hidden_size=1024, intermediate_size=3072, num_hidden_layers=5, num_attention_heads=16,
    num_key_value_heads=8, head_dim=128, vocab_size=2048, num_code_groups=16, max_position_embeddings=65536,
    rms_norm_eps=1e-6, rope_theta=1_000_000,
)  # fmt: skip
LANGUAGE_IDS = {
    "chinese": 2055, "english": 2050, "german": 2053, "italian": 2070, "portuguese": 2071, "spanish": 2054,
    "japanese": 2058, "korean": 2064, "french": 2061, "russian": 2069, "beijing_dialect": 2074,
    "sichuan_dialect": 2062,
}  # fmt: skip
SPEAKER_IDS = {
    "serena": 3066, "vivian": 3065, "uncle_fu": 3010, "ryan": 3061, "aiden": 2861, "ono_anna": 2873,
    "sohee": 2864, "eric": 2875, "dylan": 2878,
}  # fmt: skip
DIALECTS = {"eric": "sichuan_dialect", "dylan": "beijing_dialect"}
CODEC_IDS = dict(
    codec_pad_id=2148, codec_bos_id=2149, codec_eos_token_id=2150, codec_think_id=2154, codec_nothink_id=2155,
    codec_think_bos_id=2156, codec_think_eos_id=2157,
)  # fmt: skip
SPEECH_DECODER = dict(
    latent_dim=1024, codebook_dim=512, codebook_size=2048, decoder_dim=1536, hidden_size=512,
    intermediate_size=1024, layer_scale_initial_scale=0.01, max_position_embeddings=8000, head_dim=64,
    num_attention_heads=16, num_hidden_layers=8, num_key_value_heads=16, num_quantizers=16,
    num_semantic_quantizers=1, rms_norm_eps=1e-5, rope_theta=10000, semantic_codebook_size=4096,
    sliding_window=72, upsample_rates=[8, 5, 4, 3], upsampling_ratios=[2, 2],
    vector_quantization_hidden_dimension=512,
)  # fmt: skip
# --quick: the same code paths with toy sizes (seconds to build on a CPU).
QUICK_TALKER = dict(
    hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    head_dim=64, text_hidden_size=256,
)  # fmt: skip
QUICK_CODE_PREDICTOR = dict(
    CODE_PREDICTOR, hidden_size=128, intermediate_size=256, num_hidden_layers=1, num_attention_heads=4,
    num_key_value_heads=2, head_dim=32,
)  # fmt: skip
QUICK_SPEECH = dict(
    encoder_config=dict(
        hidden_size=32, num_filters=4, upsampling_ratios=[8, 6, 5, 4], upsample_groups=32, codebook_size=2048,
        codebook_dim=16, vector_quantization_hidden_dimension=16, num_quantizers=16,
        num_semantic_quantizers=1,
        num_hidden_layers=1, intermediate_size=64, num_attention_heads=2, num_key_value_heads=2, head_dim=16,
        sliding_window=250,
    ),
    decoder_config=dict(
        codebook_size=2048, codebook_dim=32, hidden_size=32, latent_dim=32, num_attention_heads=2,
        num_key_value_heads=2, intermediate_size=64, num_hidden_layers=1, num_quantizers=16,
        upsample_rates=[8, 5, 4, 3], upsampling_ratios=[2, 2], decoder_dim=64, sliding_window=72,
    ),
)  # fmt: skip
GENERATION_DEFAULTS = dict(
    do_sample=True, top_k=50, top_p=1.0, temperature=0.9, repetition_penalty=1.05, subtalker_dosample=True,
    subtalker_top_k=50, subtalker_top_p=1.0, subtalker_temperature=0.9, max_new_tokens=2048,
)  # fmt: skip


def _n_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def _save_speech_tokenizer(path: Path, quick: bool, device: str) -> int:
    import torch
    from qwen_tts.core import Qwen3TTSTokenizerV2Config, Qwen3TTSTokenizerV2Model
    from transformers import EncodecFeatureExtractor

    parts: dict[str, Any] = QUICK_SPEECH if quick else dict(encoder_config={}, decoder_config=SPEECH_DECODER)
    config = Qwen3TTSTokenizerV2Config(
        **parts, encoder_valid_num_quantizers=16, input_sample_rate=24000, output_sample_rate=24000,
        decode_upsample_rate=1920, encode_downsample_rate=1920,
    )  # fmt: skip
    with torch.device(device):
        model = Qwen3TTSTokenizerV2Model(config)
    n = _n_params(model)
    model.to(torch.bfloat16).save_pretrained(str(path))
    EncodecFeatureExtractor(
        feature_size=1, sampling_rate=24000, padding_value=0.0, return_attention_mask=True
    ).save_pretrained(str(path))
    del model
    return n


def build_qwen_tts(
    out_dir: Path, size: str, *, quick: bool = False, device: str = "cpu", seed: int = 0
) -> dict:
    """Write a random-weight CustomVoice checkpoint of `size` under out_dir; returns {path, params}.

    Built in float32 on `device` (initialisation on the GPU takes seconds), saved in bfloat16."""
    import torch
    from qwen_tts.core.models import Qwen3TTSConfig, Qwen3TTSForConditionalGeneration, Qwen3TTSProcessor

    from tests.tiny_qwen_tts import SPECIAL_TOKENS, _text_tokenizer

    torch.manual_seed(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _text_tokenizer()
    token_ids = {t: int(tokenizer.convert_tokens_to_ids(t)) for t in SPECIAL_TOKENS}
    shape = dict(QWEN_SIZES[size])
    model_size = shape.pop("tts_model_size")
    if quick:
        shape = dict(QUICK_TALKER)
    mrope = [24, 20, 20] if shape["head_dim"] == 128 else [12, 10, 10]
    talker = dict(
        **shape, vocab_size=3072, text_vocab_size=151936 if not quick else len(tokenizer), num_code_groups=16,
        rms_norm_eps=1e-6, rope_theta=1_000_000, max_position_embeddings=32768, hidden_act="silu",
        position_id_per_seconds=13,
        rope_scaling={"rope_type": "default", "mrope_section": mrope, "interleaved": True},
        **CODEC_IDS, codec_language_id=dict(LANGUAGE_IDS), spk_id=dict(SPEAKER_IDS),
        spk_is_dialect={name: DIALECTS.get(name, False) for name in SPEAKER_IDS},
        code_predictor_config=dict(QUICK_CODE_PREDICTOR if quick else CODE_PREDICTOR),
    )  # fmt: skip
    config = Qwen3TTSConfig(
        talker_config=talker, speaker_encoder_config={"enc_dim": shape["hidden_size"], "sample_rate": 24000},
        tokenizer_type="qwen3_tts_tokenizer_12hz", tts_model_size=model_size, tts_model_type="custom_voice",
        im_start_token_id=token_ids["<|im_start|>"], im_end_token_id=token_ids["<|im_end|>"],
        tts_pad_token_id=token_ids["<|tts_pad|>"], tts_bos_token_id=token_ids["<|tts_text_bos|>"],
        tts_eos_token_id=token_ids["<|tts_text_eod|>"],
    )  # fmt: skip
    speech_dir = out_dir / "speech_tokenizer"
    speech_params = _save_speech_tokenizer(speech_dir, quick, device)
    with torch.device(device):
        model = Qwen3TTSForConditionalGeneration(config)
    with torch.no_grad():  # never stop: every item runs to max_new_tokens (see tests/tiny_qwen_tts.py)
        model.talker.codec_head.weight[CODEC_IDS["codec_eos_token_id"]].zero_()
    params = _n_params(model)
    model.to(torch.bfloat16).save_pretrained(str(out_dir))
    del model
    config_path = out_dir / "config.json"
    saved = json.loads(config_path.read_text())
    saved["speaker_encoder_config"].pop("model_type", None)  # qwen-tts config bug, see tests/tiny_qwen_tts.py
    config_path.write_text(json.dumps(saved, indent=2))
    Qwen3TTSProcessor(tokenizer=tokenizer).save_pretrained(str(out_dir))
    (out_dir / "generation_config.json").write_text(json.dumps(GENERATION_DEFAULTS))
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return {"path": out_dir, "params": params, "speech_tokenizer_params": speech_params}


# -- Whisper ---------------------------------------------------------------------------------------------

WHISPER_LARGE_V3 = dict(
    vocab_size=51866, num_mel_bins=128, d_model=1280, encoder_layers=32, decoder_layers=32,
    encoder_attention_heads=20, decoder_attention_heads=20, encoder_ffn_dim=5120, decoder_ffn_dim=5120,
    max_source_positions=1500, max_target_positions=448,
)  # fmt: skip
WHISPER_QUICK = dict(
    WHISPER_LARGE_V3, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
    decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
)  # fmt: skip
# large-v3 token ids: <|endoftext|> 50257, <|startoftranscript|> 50258, <|en|> 50259, <|transcribe|> 50360,
# <|notimestamps|> 50364
WHISPER_PROMPT = [50258, 50259, 50360, 50364]
WHISPER_EOS = 50257


def whisper_config(quick: bool) -> Any:
    from transformers import WhisperConfig

    return WhisperConfig(
        **(WHISPER_QUICK if quick else WHISPER_LARGE_V3), decoder_start_token_id=50258,
        bos_token_id=WHISPER_EOS,
        eos_token_id=WHISPER_EOS, pad_token_id=WHISPER_EOS, begin_suppress_tokens=[220, WHISPER_EOS],
        suppress_tokens=[],
    )  # fmt: skip


def build_whisper(quick: bool, device: str, dtype: Any, seed: int = 0) -> Any:
    """WhisperForConditionalGeneration with random weights, built directly on `device` in `dtype`."""
    import torch
    from transformers import WhisperForConditionalGeneration

    torch.manual_seed(seed)
    with torch.device(device):
        model = WhisperForConditionalGeneration._from_config(
            whisper_config(quick), attn_implementation="sdpa", torch_dtype=dtype
        )
    return model.eval()


def whisper_generate(model: Any, features: Any, new_tokens: int, beams: int) -> Any:
    """Exactly `new_tokens` tokens per window (EOS held back by min_new_tokens: random weights would stop
    anywhere), through transformers' generic generate() (Whisper's own wrapper insists on language tables
    a random model does not have)."""
    import torch
    from transformers import GenerationMixin

    prompt = torch.tensor([WHISPER_PROMPT] * features.shape[0], device=features.device)
    return GenerationMixin.generate(
        model, input_features=features, decoder_input_ids=prompt, max_new_tokens=new_tokens,
        min_new_tokens=new_tokens, num_beams=beams, do_sample=False, eos_token_id=WHISPER_EOS,
        pad_token_id=WHISPER_EOS,
    )  # fmt: skip


# -- CTranslate2 -----------------------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:400]


def _tiny_whisper_hf(path: Path) -> None:
    """A tiny random multilingual-shaped Whisper with a tiny tokenizer holding Whisper's special tokens,
    saved for ctranslate2's TransformersConverter (it pads the vocabulary with timestamp tokens)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizerFast

    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>",
                "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]  # fmt: skip
    vocab = {chr(c): i for i, c in enumerate(range(33, 127))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="!"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    hf_tok = WhisperTokenizerFast(tokenizer_object=tok, unk_token="!", bos_token="<|endoftext|>",
                                  eos_token="<|endoftext|>", pad_token="<|endoftext|>")  # fmt: skip
    hf_tok.add_special_tokens({"additional_special_tokens": specials[1:]})
    hf_tok.add_tokens(["<|endoftext|>"], special_tokens=True)
    ids = {s: hf_tok.convert_tokens_to_ids(s) for s in specials}
    config = whisper_config(quick=True)
    config.vocab_size = len(hf_tok) + 64
    config.num_mel_bins = 80
    config.decoder_start_token_id = ids["<|startoftranscript|>"]
    config.eos_token_id = config.bos_token_id = config.pad_token_id = ids["<|endoftext|>"]
    config.begin_suppress_tokens = [ids["<|endoftext|>"]]
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    model.generation_config.lang_to_id = {"<|en|>": ids["<|en|>"]}
    model.generation_config._from_model_config = False
    model.save_pretrained(str(path))
    hf_tok.save_pretrained(str(path))
    WhisperFeatureExtractor(feature_size=80).save_pretrained(str(path))
    (path / "ids.json").write_text(json.dumps(ids))


def ct2_probe(work: Path, device: str) -> dict[str, Any]:
    """Can CTranslate2 (faster-whisper's engine) run Whisper on this device? Each step's outcome, the
    first failure verbatim. The PyPI wheel dlopens CUDA 12's libcublas.so.12."""
    import numpy as np

    out: dict[str, Any] = {"device": device}
    try:
        import ctranslate2
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return {**out, "ok": False, "failed_at": "import", "error": _one_line(exc)}
    out["version"] = ctranslate2.__version__
    cuda = device.startswith("cuda")
    if cuda:
        out["cuda_devices"] = ctranslate2.get_cuda_device_count()
        try:
            out["compute_types"] = sorted(ctranslate2.get_supported_compute_types("cuda"))
        except Exception as exc:  # noqa: BLE001
            out["compute_types_error"] = _one_line(exc)
    step = "build tiny HF Whisper"
    try:
        from ctranslate2.converters import TransformersConverter

        hf_dir, ct2_dir = work / "hf", work / "ct2"
        shutil.rmtree(work, ignore_errors=True)
        hf_dir.mkdir(parents=True)
        _tiny_whisper_hf(hf_dir)
        ids = json.loads((hf_dir / "ids.json").read_text())
        step = "convert (TransformersConverter, float16)"
        TransformersConverter(str(hf_dir)).convert(str(ct2_dir), quantization="float16", force=True)
        step = f"load on {device}"
        compute = "float16" if cuda else "float32"
        model = ctranslate2.models.Whisper(
            str(ct2_dir), device="cuda" if cuda else "cpu", compute_type=compute
        )
        features = ctranslate2.StorageView.from_array(
            np.random.default_rng(0).random((1, 80, 3000), np.float32)
        )
        step = "encode (conv + attention)"
        model.encode(features)
        step = "generate (beam 5)"
        prompt = [
            [ids["<|startoftranscript|>"], ids["<|en|>"], ids["<|transcribe|>"], ids["<|notimestamps|>"]]
        ]
        result = model.generate(
            features, prompt, beam_size=5, max_length=12, suppress_tokens=[ids["<|endoftext|>"]]
        )
        out.update(ok=True, tokens=len(result[0].sequences_ids[0]))
    except Exception as exc:  # noqa: BLE001
        out.update(ok=False, failed_at=step, error=_one_line(exc))
    return out


def library_versions() -> dict[str, str]:
    import importlib.metadata

    names = ["torch", "transformers", "tokenizers", "huggingface_hub", "accelerate", "qwen-tts", "demucs",
             "ctranslate2", "numpy", "librosa", "soundfile"]  # fmt: skip
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "-"
    versions["python"] = ".".join(map(str, __import__("sys").version_info[:3]))
    versions["PYTHONPATH"] = os.environ.get("PYTHONPATH", "")
    return versions
