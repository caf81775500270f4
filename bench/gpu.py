"""bench.gpu: the local route on one GPU, measured (real-size models, random weights).

    python -m bench.gpu [--quick] [--device cuda] [--parts ct2,tts,demucs,whisper,e2e] [--sizes 1.7B,0.6B]
                        [--batches 1,8,32,64,128] [--frames 60] [--frames2 120] [--minutes 10] [--lines 160]
                        [--budget-s 400] [--out DIR]

Prints ONE markdown table on stdout (progress goes to stderr) and writes gpu_bench.json and gpu_table.md to
--out (default: $OUT when set). Needs the project's model packages (qwen-tts, transformers 4.57, demucs) but
no weights and no network: bench/gpu_models.py builds every model at its published size with random weights
and loads the TTS models through the real qwen_tts loader. Speed and memory do not depend on weight values;
what random weights change is WHEN generation stops, so every length is fixed: the TTS talker's EOS is
suppressed (each item runs to max_new_tokens) and Whisper decodes a fixed number of tokens per 30 s window.

Parts (each timed on its own, peak GPU memory reset before and memory released after each stage):
- ct2: can CTranslate2 (faster-whisper's engine) run on this GPU at all? (a tiny converted Whisper)
- tts: Qwen3-TTS CustomVoice 1.7B and 0.6B, bf16, sdpa: audio seconds per wall second at each batch size
  (items of mixed languages and speakers, `--frames` codec frames each), the decode share, peak memory
  above the weights, and the per-item memory cost (fitted from two lengths) that models/tts_batching.py uses.
- demucs: htdemucs (released architecture), demucs.apply.apply_model as the separator calls it, fp32.
- whisper: Whisper large-v3 through transformers, fp16, beam 5, one 30 s window at a time (as
  faster-whisper's WhisperModel.transcribe works), `--tokens` tokens per window.
- e2e: a generated `--minutes` speech-like input (tests/speechlike.py style, stereo 44.1 kHz):
  separation (the project's DemucsSeparator on the GPU) -> transcription (all windows in one batched
  beam-5 generate) -> TTS of `--lines` lines x 3 languages, batched across lines AND languages with
  models/tts_batching.py (plan_batches + batch_size_for with the memory cost just measured).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

T0 = time.perf_counter()
GIB = 1 << 30
SR_TTS = 24_000
FRAME_RATE_HZ = 12.5
LANGS = {  # code -> (qwen-tts language, CustomVoice speaker, characters per second of speech)
    "en": ("English", "Ryan", 14.0),
    "ja": ("Japanese", "Ono_Anna", 7.0),
    "ko": ("Korean", "Sohee", 6.5),
    "de": ("German", "Aiden", 13.0),
    "zh": ("Chinese", "Vivian", 4.5),
    "fr": ("French", "Serena", 14.0),
}
_WORDS = (
    "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven", "bright", "stars",
    "watch", "from", "far", "above", "every", "morning", "she", "walks", "to", "the", "old", "harbour", "and",
    "counts", "the", "boats", "that", "return", "with", "fish",
)  # fmt: skip
_KANA = "きょうはいいてんきですねわたしはがっこうへいきますあしたもはれるでしょうかみなさんこんにちは東京大阪"
_HANGUL = "오늘은날씨가좋습니다저는학교에갑니다내일도맑을까요여러분안녕하세요서울부산"
_CJK = "今天天气很好我去学校明天也会晴天吗大家好北京上海"


def log(message: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {message}", file=sys.stderr, flush=True)


def sample_text(code: str, seconds: float, rng: np.random.Generator) -> str:
    """A text that takes about `seconds` to say in language `code` (only its length matters here)."""
    chars = max(4, round(seconds * LANGS[code][2]))
    if code in ("ja", "ko", "zh"):
        pool = {"ja": _KANA, "ko": _HANGUL, "zh": _CJK}[code]
        return "".join(pool[i] for i in rng.integers(0, len(pool), chars)) + "。"
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < chars:
        words.append(_WORDS[int(rng.integers(0, len(_WORDS)))])
    return " ".join(words).capitalize() + "."


class Gpu:
    """Timing and peak-memory helpers that also work (without memory figures) on a CPU."""

    def __init__(self, device: str) -> None:
        import torch

        self.torch = torch
        self.device = device
        self.cuda = device.startswith("cuda")

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def allocated(self) -> int:
        return int(self.torch.cuda.memory_allocated()) if self.cuda else 0

    def free(self) -> int:
        return int(self.torch.cuda.mem_get_info()[0]) if self.cuda else 64 * GIB

    @contextlib.contextmanager
    def measure(self) -> Iterator[dict[str, float]]:
        """{'wall_s', 'peak_bytes' (max allocated during), 'peak_above_bytes' (above the start)}"""
        self.sync()
        base = self.allocated()
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats()
        stats: dict[str, float] = {}
        start = time.perf_counter()
        try:
            yield stats
        finally:
            self.sync()
            stats["wall_s"] = time.perf_counter() - start
            peak = int(self.torch.cuda.max_memory_allocated()) if self.cuda else 0
            stats["peak_bytes"] = peak
            stats["peak_above_bytes"] = max(0, peak - base)

    def release(self) -> dict[str, float]:
        gc.collect()
        if self.cuda:
            self.torch.cuda.empty_cache()
        return {"allocated_after_release_gib": self.allocated() / GIB}


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.gpu = Gpu(args.device)
        self.rows: list[dict[str, Any]] = []
        self.results: dict[str, Any] = {"args": vars(args), "errors": {}}
        self.deadline = time.perf_counter() + args.budget_s
        self.work = Path(args.work) if args.work else _work_dir()
        self.work.mkdir(parents=True, exist_ok=True)
        self.dtype_tts = self.gpu.torch.bfloat16
        self.cost_1b7: Any = None  # ItemCost measured in this run, for the e2e batches
        self.qwen_dirs: dict[str, Path] = {}

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def row(self, stage: str, config: str, wall_s: float | None, media_s: float | None = None,
            peak_bytes: float | None = None, note: str = "", **extra: Any) -> None:  # fmt: skip
        speed = media_s / wall_s if media_s and wall_s else None
        if self.args.quick:
            stage += " (toy)"
        self.rows.append(
            dict(
                stage=stage,
                config=config,
                wall_s=wall_s,
                media_s=media_s,
                speed_x=speed,
                rtf=(wall_s / media_s) if media_s and wall_s else None,
                peak_gib=(peak_bytes / GIB) if peak_bytes is not None and self.gpu.cuda else None,
                note=note,
                **extra,
            )  # fmt: skip
        )
        timing = (
            ""
            if wall_s is None
            else f" | wall {wall_s:.3f} s" + ("" if speed is None else f" | {speed:.2f}x")
        )
        log(f"{stage} | {config}{timing} | {note}")

    def part(self, name: str, fn: Callable[[], None], need_s: float = 0.0) -> None:
        if self.left() < need_s:
            self.row(
                name,
                "skipped",
                None,
                note=f"skipped: {self.left():.0f} s of budget left, needs ~{need_s:.0f}",
            )
            return
        log(f"== {name} ({self.left():.0f} s of budget left)")
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - one failed part must not hide the others
            message = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500]
            self.results["errors"][name] = {"error": message, "traceback": traceback.format_exc()[-4000:]}
            self.row(name, "FAILED", None, note=message)
            log(traceback.format_exc())
        finally:
            self.results.setdefault("release", {})[name] = self.gpu.release()

    # -- ct2 ---------------------------------------------------------------------------------------------

    def ct2(self) -> None:
        from bench.gpu_models import ct2_probe

        started = time.perf_counter()
        probe = ct2_probe(self.work / "ct2", self.args.device)
        self.results["ct2"] = probe
        if probe.get("ok"):
            note = f"ctranslate2 {probe.get('version')} ran a tiny Whisper (encode + beam-5 generate)"
        else:
            note = (
                f"ctranslate2 {probe.get('version', '?')} FAILED at {probe.get('failed_at')}: "
                f"{probe.get('error')}"
            )
        extra = f"; cuda devices seen: {probe.get('cuda_devices')}" if "cuda_devices" in probe else ""
        self.row("asr: CTranslate2 probe", f"float16 on {self.args.device}", time.perf_counter() - started,
                 note=note + extra)  # fmt: skip

    # -- TTS ---------------------------------------------------------------------------------------------

    def load_qwen(self, size: str) -> tuple[Any, float]:
        from qwen_tts import Qwen3TTSModel

        from bench.gpu_models import build_qwen_tts

        if size not in self.qwen_dirs:
            started = time.perf_counter()
            built = build_qwen_tts(
                self.work / f"qwen-{size}", size, quick=self.args.quick, device=self.args.device
            )
            self.qwen_dirs[size] = built["path"]
            self.results.setdefault("tts", {}).setdefault(size, {}).update(
                build_s=time.perf_counter() - started, params=built["params"],
                speech_tokenizer_params=built["speech_tokenizer_params"],
            )  # fmt: skip
            log(
                f"built Qwen3-TTS {size}: {built['params'] / 1e9:.3f} B params + speech tokenizer "
                f"{built['speech_tokenizer_params'] / 1e6:.1f} M in {time.perf_counter() - started:.1f} s"
            )
        with self.gpu.measure() as load:
            tts = Qwen3TTSModel.from_pretrained(
                str(self.qwen_dirs[size]), device_map=self.args.device, dtype=self.dtype_tts,
                attn_implementation="sdpa",
            )  # fmt: skip
        tts.model.eval()
        return tts, load["wall_s"]

    def tts(self, size: str) -> None:
        args = self.args
        tts, load_s = self.load_qwen(size)
        model_ref = {"tts": tts}
        del tts
        weights = self.gpu.allocated()
        info = self.results.setdefault("tts", {}).setdefault(size, {})
        info.update(
            load_s=load_s,
            weights_gib=weights / GIB,
            attn=getattr(model_ref["tts"].model.config, "_attn_implementation", "?"),
        )
        self.row(f"tts {size}: load", "from_pretrained, bf16, sdpa", load_s, peak_bytes=weights,
                 note=f"{info['params'] / 1e9:.2f} B params; weights {weights / GIB:.2f} GiB")  # fmt: skip
        decode = _DecodeTimer(model_ref["tts"], self.gpu)
        codes = [c for c in args.langs.split(",") if c in LANGS]
        rng = np.random.default_rng(1)

        def run(batch: int, frames: int) -> dict[str, Any]:
            chosen = [codes[i % len(codes)] for i in range(batch)]
            texts = [sample_text(c, 4.0, rng) for c in chosen]
            decode.reset()
            self.gpu.torch.manual_seed(batch * 1000 + frames)
            with self.gpu.measure() as m:
                wavs, rate = model_ref["tts"].generate_custom_voice(
                    text=texts, language=[LANGS[c][0] for c in chosen], speaker=[LANGS[c][1] for c in chosen],
                    max_new_tokens=frames + 1,  # N yields N-1 frames (qwen-tts 0.1.1)
                )  # fmt: skip
            audio_s = sum(len(w) for w in wavs) / rate
            got = {len(w) for w in wavs}
            finite = bool(all(np.isfinite(w).all() for w in wavs))
            return dict(
                batch=batch, frames=frames, wall_s=m["wall_s"], audio_s=audio_s, decode_s=decode.seconds,
                peak_above_bytes=m["peak_above_bytes"], peak_bytes=m["peak_bytes"],
                samples_per_item=sorted(got), finite=finite,
            )  # fmt: skip

        run(2, 4)  # warm-up: kernels, allocator, cuBLAS handles
        sweep: list[dict[str, Any]] = []
        for batch in [int(b) for b in args.batches.split(",")]:
            if self.left() < args.tts_min_left_s:
                self.row(f"tts {size}", f"batch {batch}", None, note="skipped: budget")
                continue
            r = run(batch, args.frames)
            sweep.append(r)
            per_frame_ms = 1000 * (r["wall_s"] - r["decode_s"]) / args.frames
            self.row(f"tts {size}", f"batch {batch} x {args.frames} frames", r["wall_s"], r["audio_s"],
                     r["peak_bytes"], note=f"{per_frame_ms:.1f} ms/frame step; decode {r['decode_s']:.2f} s; "
                     f"+{r['peak_above_bytes'] / GIB:.2f} GiB above weights", kind="tts_sweep", size=size,
                     batch=batch)  # fmt: skip
        info["sweep"] = sweep
        # The per-item cost at a second length, from the slope between two batch sizes.
        pair = [b for b in (8, 32) if any(r["batch"] == b for r in sweep)] if not args.quick else [1, 2]
        if len(pair) == 2 and self.left() > args.tts_min_left_s:
            long_runs = [run(b, args.frames2) for b in pair]
            info["long"] = long_runs
            for r in long_runs:
                self.row(f"tts {size}", f"batch {r['batch']} x {args.frames2} frames", r["wall_s"],
                         r["audio_s"], r["peak_bytes"],
                         note=f"+{r['peak_above_bytes'] / GIB:.2f} GiB above weights (memory fit)",
                         kind="tts_long", size=size, batch=r["batch"])  # fmt: skip
            short = {r["batch"]: r for r in sweep}
            cost = _fit_cost(short[pair[0]], short[pair[1]], long_runs[0], long_runs[1])
            info["item_cost"] = cost
            self.row(f"tts {size}: memory per item", "fitted", None,
                     note=f"{cost['fixed_bytes'] / 2**20:.1f} MiB + "
                     f"{cost['bytes_per_frame'] / 2**20:.3f} MiB "
                     f"per frame ({cost['at_frames'][0]}: {cost['per_item_bytes'][0] / 2**20:.0f} MiB, "
                     f"{cost['at_frames'][1]}: {cost['per_item_bytes'][1] / 2**20:.0f} MiB)")  # fmt: skip
            if size == "1.7B":
                from models.tts_batching import ItemCost

                self.cost_1b7 = ItemCost(
                    max(0, int(cost["fixed_bytes"])), max(1, int(cost["bytes_per_frame"]))
                )
        decode.restore()
        model_ref.clear()
        self.results["tts"][size]["release"] = self.gpu.release()

    # -- demucs ------------------------------------------------------------------------------------------

    def demucs(self) -> None:
        import torch
        from demucs.apply import apply_model
        from demucs.htdemucs import HTDemucs

        from tests.tiny_demucs import full_size_kwargs, tiny_kwargs

        torch.manual_seed(0)
        holder = {"model": HTDemucs(**(tiny_kwargs() if self.args.quick else full_size_kwargs())).eval()}
        params = sum(p.numel() for p in holder["model"].parameters())
        seconds = self.args.demucs_seconds
        mix = torch.from_numpy(_speechlike_mix(seconds, 44100, seed=3)[0].T.copy())

        def separate(x: Any) -> Any:
            with torch.no_grad():
                return apply_model(
                    holder["model"], x[None], shifts=0, split=True, overlap=0.25, device=self.args.device,
                    progress=False, num_workers=0,
                )  # fmt: skip

        separate(mix[:, : 44100 * 8])  # warm-up (cuDNN plans, allocator)
        with self.gpu.measure() as m:
            out = separate(mix)
        self.results["demucs"] = dict(params=params, seconds=seconds, **m)
        config = f"{params / 1e6:.1f} M params, fp32, {seconds:.0f} s stereo 44.1 kHz"
        self.row("separation: htdemucs", config,
                 m["wall_s"], seconds, m["peak_bytes"],
                 note="demucs.apply.apply_model(split, overlap 0.25, one pass), random weights")  # fmt: skip
        del out
        holder.clear()

    # -- whisper -----------------------------------------------------------------------------------------

    def whisper(self) -> None:
        import torch

        from bench.gpu_models import build_whisper

        dtype = torch.float16 if self.gpu.cuda else torch.float32
        with self.gpu.measure() as build:
            model = build_whisper(self.args.quick, self.args.device, dtype)
        n_mels = model.config.num_mel_bins
        windows = self.args.whisper_windows
        feats = torch.randn(1, n_mels, 3000, device=self.args.device, dtype=dtype)
        from bench.gpu_models import whisper_generate

        with torch.no_grad():
            whisper_generate(model, feats, 4, 5)  # warm-up
            with self.gpu.measure() as m:
                for _ in range(windows):
                    whisper_generate(model, feats, self.args.tokens, 5)
        audio = 30.0 * windows
        self.results["whisper"] = dict(build_s=build["wall_s"], windows=windows, tokens=self.args.tokens, **m)
        self.row("asr: Whisper large-v3",
                 f"transformers {str(dtype).replace('torch.', '')} sdpa, beam 5, 1 window at a time, "
                 f"{self.args.tokens} tokens/30 s",
                 m["wall_s"], audio, m["peak_bytes"],
                 note="random weights; not CTranslate2 (see the probe row); faster-whisper's "
                 "sequential loop")  # fmt: skip
        del model, feats

    # -- end to end --------------------------------------------------------------------------------------

    def e2e(self) -> None:
        import soundfile as sf
        import torch

        args = self.args
        seconds = args.minutes * 60
        log(f"generating a {seconds:.0f} s speech-like input with {args.lines} lines")
        audio, segments = _speechlike_mix(seconds, 44100, seed=7, lines=args.lines)
        wav = self.work / "e2e_input.wav"
        sf.write(str(wav), audio, 44100, subtype="FLOAT")
        del audio
        stages: dict[str, dict[str, Any]] = {}

        # 1. separation: the project's separator (models/demucs_separator.py) on the GPU
        from tests.tiny_demucs import full_size_kwargs, save_model, tiny_kwargs

        repo = self.work / "demucs_repo"
        save_model(repo, "htdemucs_random", tiny_kwargs() if args.quick else full_size_kwargs())
        vocals, background = self.work / "vocals.wav", self.work / "background.wav"
        try:
            from models.demucs_separator import DemucsSeparator
            from models.demucs_separator import load_model as demucs_load

            separator = DemucsSeparator("htdemucs_random", model_dir=repo, device=args.device)
            with self.gpu.measure() as load:
                separator.load()
            with self.gpu.measure() as m:
                separator.separate(wav, vocals, background)
            how = "models.demucs_separator.DemucsSeparator (60 s chunks, shifts 1)"
            del separator
            demucs_load.cache_clear()
        except ImportError as exc:  # the project tree mid-refactor: same work, demucs' own API
            how = f"demucs apply_model directly (project separator did not import: {exc})"
            load, m = self._separate_directly(repo, wav, vocals, background)
        stages["separation"] = dict(load_s=load["wall_s"], **m, how=how)
        self.row("e2e: separation", how, m["wall_s"], seconds, m["peak_bytes"],
                 note=f"model load {load['wall_s']:.1f} s (not in wall)")  # fmt: skip
        self.gpu.release()

        # 2. transcription: Whisper large-v3 (transformers fp16), all 30 s windows in one beam-5 batch
        from scipy.signal import resample_poly
        from transformers import WhisperFeatureExtractor

        from bench.gpu_models import build_whisper, whisper_generate

        dtype = torch.float16 if self.gpu.cuda else torch.float32
        dtype_name = str(dtype).replace("torch.", "")
        with self.gpu.measure() as load:
            model = build_whisper(args.quick, args.device, dtype)
        started = time.perf_counter()
        voice = sf.read(str(vocals), dtype="float32")[0].mean(axis=1)
        voice16 = resample_poly(voice, 160, 441).astype(np.float32)
        n_win = math.ceil(len(voice16) / (30 * 16000))
        chunks = [voice16[i * 480000 : (i + 1) * 480000] for i in range(n_win)]
        extractor = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)
        kwargs: dict[str, Any] = {"device": args.device} if self.gpu.cuda else {}
        feats = extractor(chunks, sampling_rate=16000, return_tensors="pt", **kwargs).input_features
        feats = feats.to(args.device, dtype)
        prep_s = time.perf_counter() - started
        with torch.no_grad(), self.gpu.measure() as m:
            whisper_generate(model, feats, args.tokens, 5)
        stages["transcription"] = dict(load_s=load["wall_s"], prep_s=prep_s, windows=n_win, **m)
        self.row("e2e: transcription", f"Whisper large-v3 transformers {dtype_name}, {n_win} windows "
                 "batched, "
                 "beam 5, "
                 f"{args.tokens} tokens/window", m["wall_s"] + prep_s, seconds, m["peak_bytes"],
                 note=f"features + resampling {prep_s:.1f} s included; "
                 f"build {load['wall_s']:.1f} s not")  # fmt: skip
        del model, feats
        self.gpu.release()

        # 3. TTS: every line x every language, batched across both
        from models.tts_batching import (
            ITEM_COST,
            SynthesisItem,
            batch_size_for,
            frames_for_seconds,
            plan_batches,
        )

        tts, load_s = self.load_qwen("1.7B")
        codes = [c for c in args.langs.split(",") if c in LANGS][:3]
        rng = np.random.default_rng(11)
        items = [
            SynthesisItem(
                f"{i}:{code}",
                sample_text(code, dur, rng),
                LANGS[code][0],
                LANGS[code][1],
                "qwen3-tts-1.7b-customvoice-random",
                "custom_voice",
                frames_for_seconds(dur),
            )  # fmt: skip
            for i, (_, dur) in enumerate(segments)
            for code in codes
        ]
        cost = self.cost_1b7 or ITEM_COST["1.7B"]
        free = self.gpu.free()
        cap = args.chosen or self.knee("1.7B")
        stages_note = f"batch cap {cap} ({'given' if args.chosen else 'measured knee'})"

        def allowed(frames: int) -> int:
            return batch_size_for(free, "1.7B", frames + 1, cost=cost, max_batch=cap)

        batches = plan_batches(items, allowed)
        log(f"e2e TTS: {len(items)} items in {len(batches)} batches {[len(b.items) for b in batches]}, "
            f"free {free / GIB:.1f} GiB, cost {cost}")  # fmt: skip
        wanted_s = sum(i.expected_frames for i in items) / FRAME_RATE_HZ
        generated_s = 0.0
        per_batch = []
        with self.gpu.measure() as m:
            for k, batch in enumerate(batches):
                self.gpu.torch.manual_seed(k)
                t = time.perf_counter()
                wavs, rate = tts.generate_custom_voice(
                    text=batch.texts, language=batch.languages, speaker=batch.voices,
                    max_new_tokens=batch.max_frames + 1,
                )  # fmt: skip
                generated_s += sum(len(w) for w in wavs) / rate
                per_batch.append(dict(items=len(batch.items), max_frames=batch.max_frames, fill=batch.fill,
                                      wall_s=time.perf_counter() - t))  # fmt: skip
        stages["tts"] = dict(load_s=load_s, items=len(items), batches=per_batch, wanted_audio_s=wanted_s,
                             generated_audio_s=generated_s, **m)  # fmt: skip
        fills = sum(b["fill"] * b["items"] for b in per_batch) / max(1, len(items))
        self.row("e2e: tts", f"1.7B bf16, {len(items)} clips ({len(segments)} lines x {len(codes)} "
                 "languages) in "
                 f"{len(batches)} calls of <= {max(len(b.items) for b in batches)}", m["wall_s"], wanted_s,
                 m["peak_bytes"], note=f"{stages_note}; speed counts the wanted audio ({wanted_s:.0f} s; "
                 f"generated "
                 f"{generated_s:.0f} s, fill {fills:.2f}); load {load_s:.1f} s not in wall")  # fmt: skip
        del tts
        self.gpu.release()
        run_s = sum(s["wall_s"] for s in stages.values()) + stages["transcription"]["prep_s"]
        load_total = sum(s["load_s"] for s in stages.values())
        stages["total"] = dict(run_s=run_s, load_s=load_total)
        self.results["e2e"] = stages
        self.row("e2e: total", f"{seconds / 60:.1f} min input -> {len(codes)} languages", run_s, seconds,
                 note=f"stages only; + {load_total:.1f} s of model loading = "
                 f"{run_s + load_total:.1f} s")  # fmt: skip

    def knee(self, size: str) -> int:
        """The smallest measured batch size within 10 % of the best TTS throughput (the chosen size)."""
        from models.tts_batching import DEFAULT_MAX_BATCH

        sweep = self.results.get("tts", {}).get(size, {}).get("sweep") or []
        if not sweep:
            return DEFAULT_MAX_BATCH if not self.args.quick else 4
        best = max(r["audio_s"] / r["wall_s"] for r in sweep)
        chosen = min(r["batch"] for r in sweep if r["audio_s"] / r["wall_s"] >= 0.9 * best)
        self.results.setdefault("chosen_batch", {})[size] = chosen
        return int(chosen)

    def _separate_directly(self, repo: Path, wav: Path, vocals: Path, background: Path) -> tuple[dict, dict]:
        import soundfile as sf
        import torch
        from demucs.apply import apply_model

        with self.gpu.measure() as load:
            model = torch.load(repo / "htdemucs_random.th", map_location="cpu", weights_only=False)
            net = model["klass"](*model["args"], **model["kwargs"])
            net.load_state_dict(model["state"])
            net.eval()
        with self.gpu.measure() as m:
            data = sf.read(str(wav), dtype="float32")[0]
            mix = torch.from_numpy(data.T.copy())
            ref = mix.mean(0)
            mean, std = float(ref.mean()), float(ref.std()) + 1e-8
            with torch.no_grad():
                out = apply_model(net, ((mix - mean) / std)[None], shifts=1, split=True, overlap=0.25,
                                  device=self.args.device, progress=False, num_workers=0)[0]  # fmt: skip
            out = out * std + mean
            vocal = list(net.sources).index("vocals")
            sf.write(str(vocals), out[vocal].T.numpy(), 44100, subtype="FLOAT")
            sf.write(str(background), (out.sum(0) - out[vocal]).T.numpy(), 44100, subtype="FLOAT")
        return load, m

    # -- report ------------------------------------------------------------------------------------------

    def table(self) -> str:
        head = "| stage | configuration | wall s | media s | x real time | RTF | peak GPU GiB | notes |"
        lines = [head, "|---|---|---:|---:|---:|---:|---:|---|"]

        def f(value: Any, digits: int) -> str:
            return "" if value is None else f"{value:.{digits}f}"

        for r in self.rows:
            lines.append(
                f"| {r['stage']} | {r['config']} | {f(r['wall_s'], 2)} | {f(r['media_s'], 1)} | "
                f"{f(r['speed_x'], 1)} | {f(r['rtf'], 4)} | {f(r['peak_gib'], 2)} | {r['note']} |"
            )
        return "\n".join(lines)


class _DecodeTimer:
    """Times the speech tokenizer's decode inside generate_custom_voice (wraps the bound method)."""

    def __init__(self, tts: Any, gpu: Gpu) -> None:
        self.tokenizer = tts.model.speech_tokenizer
        self.original = self.tokenizer.decode
        self.seconds = 0.0

        def timed(*a: Any, **k: Any) -> Any:
            gpu.sync()
            started = time.perf_counter()
            try:
                return self.original(*a, **k)
            finally:
                gpu.sync()
                self.seconds += time.perf_counter() - started

        self.tokenizer.decode = timed

    def reset(self) -> None:
        self.seconds = 0.0

    def restore(self) -> None:
        self.tokenizer.decode = self.original


def _fit_cost(short_a: dict, short_b: dict, long_a: dict, long_b: dict) -> dict[str, Any]:
    """Per-item peak memory at two lengths, each from the slope between two batch sizes (the slope cancels
    whatever does not grow with the batch); then a line through the two lengths."""

    def per_item(a: dict, b: dict) -> float:
        return (b["peak_above_bytes"] - a["peak_above_bytes"]) / (b["batch"] - a["batch"])

    f1, f2 = short_a["frames"], long_a["frames"]
    c1, c2 = per_item(short_a, short_b), per_item(long_a, long_b)
    per_frame = (c2 - c1) / (f2 - f1)
    return dict(at_frames=[f1, f2], per_item_bytes=[c1, c2], bytes_per_frame=per_frame,
                fixed_bytes=c1 - per_frame * f1)  # fmt: skip


def _speechlike_mix(seconds: float, rate: int, seed: int, lines: int = 0) -> tuple[np.ndarray, list]:
    """Stereo float32 (samples, 2): speech-like lines (tests/speechlike.py: harmonics under a syllable
    envelope, f0 varied per line) separated by pauses, over a quiet noise-and-tone bed. With `lines`, that
    many lines filling `seconds` exactly; returns (audio, [(start_s, duration_s)])."""
    from tests.speechlike import speechlike

    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n, dtype=np.float32) / rate
    bed = 0.02 * rng.standard_normal((n, 2)).astype(np.float32)
    bed += 0.03 * np.sin(2 * np.pi * 110.0 * t)[:, None] * np.array([1.0, 0.7], dtype=np.float32)
    count = lines or max(1, int(seconds / 4))
    durations = rng.uniform(1.2, 6.0, count)
    gaps = rng.uniform(0.15, 0.9, count)
    scale = seconds / float(durations.sum() + gaps.sum())
    durations, gaps = durations * scale, gaps * scale
    segments = []
    position = 0.0
    for duration, gap in zip(durations, gaps, strict=True):
        start = position + gap / 2
        voice = speechlike(float(duration), rate, level=0.3, f0=float(rng.uniform(100, 240)))
        i = int(start * rate)
        voice = voice[: max(0, n - i)]
        bed[i : i + len(voice), 0] += voice
        bed[i : i + len(voice), 1] += 0.9 * voice
        segments.append((start, float(duration)))
        position += duration + gap
    return np.clip(bed, -1, 1), segments


def _work_dir() -> Path:
    """Scratch space for checkpoints (a few GB): RAM-backed /dev/shm when it has room, else the temp dir."""
    shm = Path("/dev/shm")
    with contextlib.suppress(OSError):
        if shm.is_dir() and shutil.disk_usage(shm).free > 24 * GIB:
            return Path(tempfile.mkdtemp(prefix="bench-gpu-", dir=shm))
    return Path(tempfile.mkdtemp(prefix="bench-gpu-"))


def parse(argv: list[str] | None) -> argparse.Namespace:
    import torch

    from models.tts_batching import DEFAULT_MAX_BATCH

    p = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="toy sizes: every part in about a minute")
    p.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu")
    p.add_argument("--parts", default="ct2,tts,demucs,whisper,e2e")
    p.add_argument("--sizes", default="1.7B,0.6B")
    p.add_argument("--batches", default=None, help="TTS batch sizes (default 1,8,32,64,128; quick 1,2)")
    p.add_argument("--frames", type=int, default=None, help="codec frames per item (default 60 = 4.8 s)")
    p.add_argument("--frames2", type=int, default=None, help="second length for the memory fit (default 120)")
    p.add_argument("--chosen", type=int, default=0, help="e2e TTS batch cap (0: the measured knee, else "
                   f"models/tts_batching.DEFAULT_MAX_BATCH = {DEFAULT_MAX_BATCH})")  # fmt: skip
    p.add_argument("--langs", default="en,ja,ko")
    p.add_argument("--minutes", type=float, default=None, help="e2e input length (default 10)")
    p.add_argument("--lines", type=int, default=None, help="e2e lines (default 160)")
    p.add_argument("--tokens", type=int, default=None, help="Whisper tokens per 30 s window (default 120)")
    p.add_argument("--whisper-windows", type=int, default=None, help="sequential windows timed (default 2)")
    p.add_argument(
        "--demucs-seconds", type=float, default=None, help="standalone htdemucs input (default 60)"
    )
    p.add_argument("--budget-s", type=float, default=400.0, help="skip optional work past this many seconds")
    p.add_argument("--tts-min-left-s", type=float, default=60.0)
    p.add_argument("--work", default=None)
    p.add_argument("--out", default=os.environ.get("OUT"))
    args = p.parse_args(argv)
    q = args.quick
    defaults = dict(batches="1,2" if q else "1,8,32,64,128", frames=6 if q else 60, frames2=10 if q else 120,
                    minutes=0.5 if q else 10.0, lines=6 if q else 160, tokens=4 if q else 120,
                    whisper_windows=1 if q else 2, demucs_seconds=10.0 if q else 60.0)  # fmt: skip
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if q:
        args.tts_min_left_s = 0.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    with contextlib.redirect_stdout(sys.stderr):  # qwen_tts prints a flash-attn banner on import
        import qwen_tts  # noqa: F401
    with contextlib.suppress(Exception):  # "Setting pad_token_id ..." once per generate call
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
    bench = Bench(args)
    from bench.gpu_models import library_versions

    env = library_versions()
    if bench.gpu.cuda:
        import torch

        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, gpu_memory_gib=props.total_memory / GIB, cuda=str(torch.version.cuda))
    bench.results["env"] = env
    log(f"env: {env}")
    parts = args.parts.split(",")
    if "ct2" in parts:
        bench.part("ct2", bench.ct2)
    if "tts" in parts:
        for size in args.sizes.split(","):
            bench.part(f"tts {size}", lambda size=size: bench.tts(size), need_s=60 if not args.quick else 0)
    if "demucs" in parts:
        bench.part("demucs", bench.demucs, need_s=20 if not args.quick else 0)
    if "whisper" in parts:
        bench.part("whisper", bench.whisper, need_s=30 if not args.quick else 0)
    if "e2e" in parts:
        bench.part("e2e", bench.e2e, need_s=60 if not args.quick else 0)
    bench.results["rows"] = bench.rows
    bench.results["total_s"] = time.perf_counter() - T0
    table = bench.table()
    print(table, flush=True)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_bench.json").write_text(json.dumps(bench.results, indent=2, default=str))
        (out / "gpu_table.md").write_text(table + "\n")
    shutil.rmtree(bench.work, ignore_errors=True)
    log(f"done in {time.perf_counter() - T0:.1f} s; errors: {list(bench.results['errors']) or 'none'}")
    return 1 if bench.results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
