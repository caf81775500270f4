"""The local TTS route on a CUDA GPU: the adapter and qwen-tts on tiny random checkpoints, bf16.

Marked `gpu` and skipped where CUDA is unavailable (CI and the development machines have no GPU), so these
tests never count as passing on a CPU. bench/gpu.py's device script runs them on the GPU machine:
`python -m pytest -m gpu tests/test_gpu.py`."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU")]

DEVICE = "cuda:0"
SR = 24_000
SAMPLES_PER_FRAME = 1920


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.tiny_qwen_tts import build_tiny_qwen_tts

    return build_tiny_qwen_tts(tmp_path_factory.mktemp("tiny-qwen-tts-gpu"), ["custom_voice"])


@pytest.fixture
def fresh_cache() -> None:
    import models.qwen_local_tts as qlt

    qlt.load_model.cache_clear()
    gc.collect()


def _adapter(tiny: dict[str, Path], **kwargs: object):  # -> QwenLocalTTS
    from models.qwen_local_tts import GenerationParams, QwenLocalTTS

    return QwenLocalTTS(
        model=str(tiny["custom_voice"]), device=DEVICE, dtype="bfloat16", retries=0,
        generation=GenerationParams(max_new_tokens=6), **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


def test_the_adapter_loads_the_model_on_cuda_in_bf16(tiny: dict[str, Path], fresh_cache: None) -> None:
    import torch

    tts = _adapter(tiny)
    model = tts.load()
    params = list(model.model.parameters())
    assert {p.device.type for p in params} == {"cuda"}
    assert {p.dtype for p in params} == {torch.bfloat16}
    decoder = list(model.model.speech_tokenizer.model.parameters())
    assert {p.device.type for p in decoder} == {"cuda"}
    attn = model.model.config._attn_implementation
    assert attn in ("sdpa", "flash_attention_2"), attn
    tts.close()


def test_a_batch_of_mixed_languages_returns_one_clip_per_item(
    tiny: dict[str, Path], fresh_cache: None
) -> None:
    """Lines AND languages in one generate call, as models/tts_batching.plan_batches groups them."""
    from models.tts_batching import SynthesisItem, plan_batches

    tts = _adapter(tiny)
    model = tts.load()
    lines = [
        ("Hello there, how are you?", "English", "Ryan", 5),
        ("こんにちは、元気ですか。", "Japanese", "Ono_Anna", 4),
        ("안녕하세요, 잘 지내세요?", "Korean", "Sohee", 3),
        ("Guten Morgen zusammen.", "German", "Aiden", 5),
    ]
    items = [
        SynthesisItem(str(i), t, lang, voice, "tiny", "custom_voice", f)
        for i, (t, lang, voice, f) in enumerate(lines)
    ]
    (batch,) = plan_batches(items, 8)
    wavs, rate = model.generate_custom_voice(
        text=batch.texts, language=batch.languages, speaker=batch.voices, max_new_tokens=batch.max_frames + 1
    )
    assert rate == SR
    assert len(wavs) == len(items)
    for wav in wavs:  # the tiny talker never stops: every item runs to the batch's cap
        assert np.asarray(wav).size == batch.max_frames * SAMPLES_PER_FRAME
    # the adapter's own batch path (one language per call) on the GPU
    from core.languages import get_language

    clips = tts.synthesize_batch(["Hello there.", "A second, longer line of text."], get_language("en"))
    assert len(clips) == 2
    assert all(c.sample_rate == SR and c.audio.dtype == np.float32 and c.audio.size > 0 for c in clips)
    assert all(np.isfinite(c.audio).all() for c in clips)
    tts.close()


def test_close_releases_the_gpu_memory(tiny: dict[str, Path], fresh_cache: None) -> None:
    import torch

    from core.languages import get_language

    gc.collect()
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    tts = _adapter(tiny)
    tts.synthesize("Hello there.", get_language("en"))
    loaded = torch.cuda.memory_allocated()
    assert loaded > before
    tts.close()
    gc.collect()
    after = torch.cuda.memory_allocated()
    assert after - before < 1 << 20, f"{(after - before) / 2**20:.1f} MiB still allocated after close()"
    assert torch.cuda.memory_reserved() <= loaded + (64 << 20)  # the cache was handed back too


def test_the_batch_size_comes_from_free_gpu_memory(tiny: dict[str, Path], fresh_cache: None) -> None:
    """Written after the last device run of its session: not yet run on a GPU."""
    from core.languages import get_language
    from models.base import SpeechRequest

    tts = _adapter(tiny)
    short = tts.batch_limit([SpeechRequest("Hi.", get_language("en"))])
    long = tts.batch_limit([SpeechRequest("A much longer line of text, " * 8, get_language("en"))])
    assert short is not None and long is not None and 1 <= long <= short <= 128
    tts.close()
