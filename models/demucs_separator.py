"""Two-stem source separation with demucs (vocals / everything else), in bounded memory.

A two-hour film never sits in memory whole, as a waveform or as a spectrogram:

1. A streaming pre-pass reads the WAV block by block for the mean and standard deviation of its mono
   mixdown (demucs normalises the whole track by them before separating).
2. The track is cut into chunks of about `chunk_seconds`. Each chunk is read from the WAV with soundfile
   with margins on both sides, resampled to the model's rate (44.1 kHz) and given to demucs'
   `apply_model(split=True)`.
3. `apply_model` itself splits its input into overlapping segments (7.8 s for htdemucs) laid on a grid of
   stride `segment * (1 - overlap)` and blends neighbouring segments with a triangular transition
   window. The chunk windows here start on that same grid and reach far enough on both sides that
   every output sample of a chunk's core is produced by exactly the segments, inputs and transition
   weights one pass over the whole track would use. Demucs' own transition window is the cross-fade,
   and the chunked stems equal the one-pass stems to float rounding, not approximately.
   Resampling (scipy's polyphase `resample_poly`) is windowed the same way: a window that starts on a
   multiple of the rate ratio's denominator and carries the filter's half-length as margin gives
   samples identical to resampling the whole track.
4. `shifts` follows demucs (each pass shifts the input by a random 0-0.5 s and the passes are
   averaged), with the offsets drawn from a fixed seed: a re-run produces the same stems, and each
   pass's chunk windows are laid on that pass's own (shifted) grid, so the equality holds for any
   `shifts`. The mixture's mean/std come from the source-rate samples (demucs takes them after
   resampling); at 44.1 kHz the stems match `apply_model` on the whole track to ~1e-7.
5. Each chunk's stems are resampled back to the source rate, folded to the source channel layout
   (mono in: duplicated to the model's two channels, averaged back) and appended to the output WAVs.

Peak memory is therefore set by `chunk_seconds` and the model, not by the duration of the input.

Nothing here imports torch or demucs at module level: the CLI can import this module to validate
options cheaply.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import importlib.metadata
import importlib.util
import io
import logging
import math
import os
import random
import resource
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from core.errors import ConfigError, InputError
from models.base import ProgressCallback

log = logging.getLogger(__name__)

DEFAULT_MODEL = "htdemucs"
DEFAULT_SHIFTS = 1  # demucs' own default: one randomly shifted pass
DEFAULT_OVERLAP = 0.25  # demucs' own default
DEFAULT_CHUNK_SECONDS = 60.0
MAX_SHIFTS = 20
VOCALS = "vocals"
SHIFT_SEED = 20_240_917  # the random shift offsets are drawn from this seed: re-runs give the same stems
ALGORITHM = "demucs-two-stem-chunked-v1"  # bump when the output of the same model/options changes
WAV_LIMIT_BYTES = 2**32 - 2**20  # a RIFF WAV cannot describe more; beyond it the stems are written as RF64
STATS_BLOCK_FRAMES = 1 << 18  # ~5 s at 48 kHz: the pre-pass stays a few MB
DEVICES = ("auto", "cpu", "cuda", "mps")


# -- which model -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRef:
    """A demucs model: a name demucs knows (downloaded on first use), or a name inside a local folder
    read by demucs' own repository loader (`<name>.th`, `<name>-<checksum>.th` or a `<name>.yaml` bag)."""

    name: str
    directory: Path | None = None

    def describe(self) -> str:
        return f"'{self.name}' in {self.directory}" if self.directory else f"'{self.name}'"


def _demucs_package_dir() -> Path:
    spec = importlib.util.find_spec("demucs")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("demucs is not installed; run `make setup`")
    return Path(next(iter(spec.submodule_search_locations)))


def known_model_names() -> list[str]:
    """The named models demucs can download (its bundled `remote/*.yaml` bags)."""
    return sorted(p.stem for p in (_demucs_package_dir() / "remote").glob("*.yaml"))


def _known_signatures() -> set[str]:
    files = _demucs_package_dir() / "remote" / "files.txt"
    sigs: set[str] = set()
    for line in files.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and not line.startswith("root:"):
            sigs.add(line.split("-", 1)[0])
    return sigs


def models_in_directory(directory: Path) -> list[str]:
    """Names demucs' LocalRepo/BagOnlyRepo would find in `directory`."""
    names = set()
    for file in directory.iterdir():
        if file.suffix == ".yaml":
            names.add(file.stem)
        elif file.suffix == ".th":
            names.add(file.stem.rsplit("-", 1)[0] if "-" in file.stem else file.stem)
    return sorted(names)


def resolve_model(model: str, model_dir: Path | str | None = None) -> ModelRef:
    """Validate a model choice without loading anything (cheap enough for the CLI's preflight).

    `model` is a name; with `model_dir` it is looked up in that folder. A `model` that is itself a
    folder holding exactly one model is accepted too (like `--asr-model NAME_OR_DIR`), and
    `hf://[namespace/]name` names a HuggingFace repository demucs loads from."""
    name = model.strip()
    if not name:
        raise ConfigError("demucs model name is empty")
    if model_dir is not None:
        directory = Path(model_dir).expanduser()
        if not directory.is_dir():
            raise ConfigError(f"demucs model folder not found: {directory}")
        if name not in models_in_directory(directory):
            raise ConfigError(f"demucs model '{name}' not found in {directory}")
        return ModelRef(name, directory.resolve())
    if name.startswith("hf://"):
        return ModelRef(name)
    if "/" in name or os.sep in name or Path(name).expanduser().is_dir():
        directory = Path(name).expanduser()
        if not directory.is_dir():
            raise ConfigError(
                f"demucs model folder not found: {directory} (a HuggingFace model is written hf://{name})"
            )
        found = models_in_directory(directory)
        if len(found) != 1:
            listing = ", ".join(found) if found else "no .th or .yaml file"
            raise ConfigError(
                f"demucs model folder {directory} must hold exactly one model ({listing}); name one"
            )
        return ModelRef(found[0], directory.resolve())
    if name not in known_model_names() and name not in _known_signatures():
        raise ConfigError(f"unknown demucs model '{name}' (known: {', '.join(known_model_names())})")
    return ModelRef(name)


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_fingerprint(ref: ModelRef) -> str:
    """Content hash of a local model's files (its yaml and the .th files it names); for a named
    model, its name (demucs' remote files are immutable and checksummed by signature)."""
    if ref.directory is None:
        return f"remote:{ref.name}"
    files: list[Path] = []
    bag = ref.directory / f"{ref.name}.yaml"
    sigs = [ref.name]
    if bag.is_file():
        import yaml

        files.append(bag)
        try:
            sigs = [str(s) for s in (yaml.safe_load(bag.read_text()) or {}).get("models", [])]
        except (yaml.YAMLError, AttributeError):
            sigs = []
    for sig in sigs:
        files += sorted(
            p for p in ref.directory.glob(f"{sig}*.th") if p.stem == sig or p.stem.startswith(sig + "-")
        )
    h = hashlib.sha256()
    for file in files:
        st = file.stat()
        h.update(f"{file.name}:{_file_sha256(str(file), st.st_size, st.st_mtime_ns)}\n".encode())
    return h.hexdigest()


def _one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "reason", None) or exc).strip() or type(exc).__name__
    return " ".join(text.split())[:300]


@contextlib.contextmanager
def _quiet_download() -> Iterator[io.StringIO]:
    """Keep a download's chatter off the console: huggingface_hub logs a warning per retry (ten lines
    when offline), torch.hub writes "Downloading: ..." to stdout and a progress bar to stderr. A
    failure must end as the CLI's one `error:` line. Swapping sys.stdout/stderr is process-wide, which
    is acceptable here: models load in the preflight or at the start of the stage, when no other
    thread is writing."""
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            yield captured
    finally:
        hub_logger.setLevel(level)


def _require_cached_when_offline(name: str) -> None:
    """With HF_HUB_OFFLINE set, a named model must be in the hub cache: demucs would otherwise fall back to
    its legacy download URL, which offline mode does not cover."""
    from huggingface_hub import constants, hf_hub_download

    if not constants.HF_HUB_OFFLINE or "/" in name:
        return
    from demucs.hf import DEFAULT_NAMESPACE, hf_repo_name

    try:
        hf_hub_download(f"{DEFAULT_NAMESPACE}/{hf_repo_name(name)}", f"{name}.yaml", local_files_only=True)
    except Exception:  # noqa: BLE001 - LocalEntryNotFoundError and friends: not cached
        raise InputError(
            f"could not download demucs model '{name}' (offline?): HF_HUB_OFFLINE is set and it is not in "
            f"the hub cache; fetch it with `qwen-dub models pull --demucs-model {name}` when online"
        ) from None


@functools.lru_cache(maxsize=2)
def load_model(ref: ModelRef) -> Any:
    """The demucs model (a single model or a BagOfModels) through demucs' own loader, in eval mode.
    Named models are downloaded on first use (HuggingFace hub, then demucs' legacy URL) and cached by
    those libraries. Loading errors become one-line ConfigError/InputError."""
    from demucs.pretrained import get_model
    from demucs.repo import ModelLoadingError

    where = ref.describe()
    if ref.directory is None:
        _require_cached_when_offline(ref.name)
    log.info("loading demucs model %s%s", where, "" if ref.directory else " (downloaded on first use)")
    try:
        with _quiet_download() as chatter:
            model = get_model(ref.name, repo=ref.directory)
        if "Downloading" in chatter.getvalue():
            log.info("downloaded demucs model %s", where)
    except SystemExit:  # demucs.utils.fatal: a quantized model without diffq, or a missing repo folder
        raise ConfigError(
            f"demucs model {where} cannot be loaded (a quantized model needs `pip install diffq`)"
        ) from None
    except ModelLoadingError as exc:
        if ref.directory is not None:
            raise ConfigError(f"demucs model {where} cannot be loaded: {_one_line(exc)}") from None
        raise ConfigError(f"unknown demucs model '{ref.name}': {_one_line(exc)}") from None
    except OSError as exc:  # URLError, HTTPError, requests' and socket errors are all OSErrors
        if ref.directory is not None:
            raise ConfigError(f"demucs model {where} cannot be read: {_one_line(exc)}") from None
        raise InputError(
            f"could not download demucs model '{ref.name}' (offline?): {_one_line(exc)}; fetch it with "
            f"`qwen-dub models pull --demucs-model {ref.name}`, "
            "or give a local folder holding its .th/.yaml files"
        ) from None
    except Exception as exc:  # noqa: BLE001 - torch.load / unpickling / yaml / checksum errors
        raise ConfigError(
            f"demucs model {where} cannot be loaded: {type(exc).__name__}: {_one_line(exc)}"
        ) from None
    sources = list(model.sources)
    if VOCALS not in sources:
        raise ConfigError(f"demucs model {where} has no vocals stem (its stems: {', '.join(sources)})")
    return model


# -- geometry: segments, grids, resampling windows ---------------------------------------------------


def _sub_models(model: Any) -> list[Any]:
    return list(model.models) if hasattr(model, "models") else [model]


def model_segment(model: Any) -> Any:
    """The segment (seconds, often a Fraction) apply_model uses for every model of a bag: the
    shortest, so that all models share one grid. For the released models all members agree."""
    return min((m.segment for m in _sub_models(model)), key=float)


@dataclass(frozen=True)
class SegmentGrid:
    """apply_model(split=True)'s segmentation, in model-rate samples: segments of `length` at
    `origin + k * stride`, over a track of `total` samples."""

    length: int
    stride: int
    total: int

    def window(self, origin: int, lo: int, hi: int) -> tuple[int, int]:
        """The samples [start, end) that one apply_model(split=True) call must be given, its first
        segment starting at a grid point, for its output on [lo, hi) to be the one-pass output."""
        seg, step, total = self.length, self.stride, self.total
        # Segments covering [lo, hi) start in (lo - seg, hi - 1]; the window starts at the first.
        start = origin + max(0, (lo - seg - origin) // step + 1) * step
        last = origin + (hi - 1 - origin) // step * step
        end = min(total, last + seg)
        # apply_model pads a segment cut short by the end of the track on both sides, reading audio
        # from before the segment's start (TensorChunk.padded): the window must include that audio.
        while True:
            need = start
            for offset in range(start, last + 1, step):
                if offset + seg > total:
                    need = min(need, offset - (seg - (total - offset)) // 2)
            if need >= start or start == origin:
                return start, end
            start = max(origin, origin + (need - origin) // step * step)


@dataclass(frozen=True)
class Resampler:
    """scipy's polyphase resampling from `src` to `dst` Hz, applied to windows of a long signal so
    that the samples equal those of resampling the whole signal."""

    src: int
    dst: int

    @property
    def up(self) -> int:
        return self.dst // math.gcd(self.src, self.dst)

    @property
    def down(self) -> int:
        return self.src // math.gcd(self.src, self.dst)

    @property
    def halo(self) -> int:
        """Input samples each output sample depends on, either side (resample_poly's Kaiser filter
        has 10 * max(up, down) taps each side at the upsampled rate)."""
        return 0 if self.up == self.down else -(-10 * max(self.up, self.down) // self.up) + 2

    def output_length(self, n_in: int) -> int:
        return -(-n_in * self.up // self.down)

    def input_range(self, lo: int, hi: int, n_in: int) -> tuple[int, int]:
        """Input samples [a, b) to read for output samples [lo, hi); `a` is a multiple of `down` so
        the window's output samples fall on the whole signal's output grid."""
        a = max(0, (lo * self.down // self.up - self.halo) // self.down * self.down)
        b = min(n_in, -(-hi * self.down // self.up) + self.halo)
        return a, b

    def apply(self, x: np.ndarray, a: int, lo: int, hi: int) -> np.ndarray:
        """Output samples [lo, hi) from input `x` = samples [a, ...) of the signal (time on axis 0)."""
        if self.up == self.down:
            return x[lo - a : hi - a]
        from scipy.signal import resample_poly

        y = resample_poly(x, self.up, self.down, axis=0)
        first = a * self.up // self.down
        return y[lo - first : hi - first]


def mixture_stats(path: Path, block_frames: int = STATS_BLOCK_FRAMES) -> tuple[float, float]:
    """Mean and (unbiased) standard deviation of the mono mixdown, read block by block."""
    count, mean, m2 = 0, 0.0, 0.0
    with sf.SoundFile(str(path)) as f:
        for block in f.blocks(blocksize=block_frames, dtype="float32", always_2d=True):
            mono = block.mean(axis=1, dtype=np.float64)
            n = len(mono)
            if n == 0:
                continue
            b_mean = float(mono.mean())
            b_m2 = float(((mono - b_mean) ** 2).sum())
            total = count + n
            delta = b_mean - mean
            mean += delta * n / total
            m2 += b_m2 + delta * delta * count * n / total
            count = total
    std = math.sqrt(m2 / (count - 1)) if count > 1 else 0.0
    return mean, std


@dataclass(frozen=True)
class Chunk:
    """One step of the plan: source samples [src_lo, src_hi) are written from model-rate stems on
    [need_lo, need_hi), computed from model-rate input [start, end) (one window per shift pass)."""

    src_lo: int
    src_hi: int
    need_lo: int
    need_hi: int
    windows: tuple[tuple[int, int], ...]

    @property
    def start(self) -> int:
        return min(w[0] for w in self.windows)

    @property
    def end(self) -> int:
        return max(w[1] for w in self.windows)


def shift_origins(shifts: int, samplerate: int, seed: int = SHIFT_SEED) -> list[int]:
    """Grid origins of the passes: apply_model's shift trick moves the input by a random 0..0.5 s,
    which puts the first segment at minus that offset. shifts=0 is one unshifted pass."""
    if shifts <= 0:
        return [0]
    max_shift = int(0.5 * samplerate)
    rng = random.Random(seed)
    return [-(max_shift - rng.randint(0, max_shift)) for _ in range(shifts)]


def plan_chunks(
    n_src: int,
    src_rate: int,
    model_rate: int,
    grid: SegmentGrid,
    origins: list[int],
    chunk_seconds: float,
) -> list[Chunk]:
    """Cut the track into chunks whose windows are on the segment grid (see the module docstring)."""
    to_src = Resampler(model_rate, src_rate)
    total = grid.total
    if math.isinf(chunk_seconds) or chunk_seconds * model_rate >= total:
        bounds = [0, total]
    else:
        strides = max(1, round(chunk_seconds * model_rate / grid.stride))
        # A boundary half a segment after a grid point lies where only one segment of the first pass
        # covers the audio (for overlap < 0.5): adjacent windows then share a single segment.
        first = origins[0] + grid.length // 2
        bounds = [0]
        k = 1
        while (q := first + k * strides * grid.stride) < total:
            bounds.append(q)
            k += 1
        bounds.append(total)
    src_bounds = sorted({min(n_src, round(q * src_rate / model_rate)) for q in bounds[:-1]} | {n_src})
    chunks: list[Chunk] = []
    for lo, hi in zip(src_bounds, src_bounds[1:], strict=False):
        if hi <= lo:
            continue
        need_lo, need_hi = to_src.input_range(lo, hi, total)
        windows = tuple(grid.window(origin, need_lo, need_hi) for origin in origins)
        chunks.append(Chunk(lo, hi, need_lo, need_hi, windows))
    return chunks


# -- the separator -----------------------------------------------------------------------------------


def resolve_device(device: str) -> str:
    """`auto`: cuda when a CUDA GPU is visible, else cpu; an explicit GPU that is absent is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device} requested but no CUDA GPU is visible; use --device cpu or auto")
    return device


def _wav_format(frames: int, channels: int) -> str:
    return "WAV" if frames * channels * 4 < WAV_LIMIT_BYTES else "RF64"


class DemucsSeparator:
    """`Separator` (models.base): vocals and background (every other stem summed) of a WAV file,
    written as float WAVs at the source's sample rate and channel layout."""

    name = "htdemucs"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        model_dir: Path | str | None = None,
        *,
        device: str = "auto",
        shifts: int = DEFAULT_SHIFTS,
        overlap: float = DEFAULT_OVERLAP,
        chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    ) -> None:
        if not isinstance(shifts, int) or not 0 <= shifts <= MAX_SHIFTS:
            raise ConfigError(f"demucs shifts must be an integer from 0 to {MAX_SHIFTS}, not {shifts!r}")
        if not 0.0 <= overlap < 1.0:
            raise ConfigError(f"demucs overlap must be at least 0 and below 1, not {overlap!r}")
        if not chunk_seconds > 0:
            raise ConfigError(f"demucs chunk length must be positive seconds, not {chunk_seconds!r}")
        if device.split(":", 1)[0] not in DEVICES:
            raise ConfigError(f"unknown device {device!r} (choose auto, cpu, cuda, cuda:N or mps)")
        self.ref = resolve_model(model, model_dir)
        self.device_choice = device
        self.shifts = shifts
        self.overlap = float(overlap)
        self.chunk_seconds = float(chunk_seconds)
        self.last_run: dict[str, Any] = {}

    def identity(self) -> dict[str, Any]:
        """What determines the stems. Chunk length and device do not: chunked output equals one pass
        (to float rounding), and devices differ only by rounding."""
        return {
            "engine": "demucs",
            "demucs": importlib.metadata.version("demucs"),
            "model": self.ref.name,
            "weights": model_fingerprint(self.ref),
            "shifts": self.shifts,
            "shift_seed": SHIFT_SEED if self.shifts else None,
            "overlap": self.overlap,
            "algorithm": ALGORITHM,
        }

    def load(self) -> Any:
        return load_model(self.ref)

    def separate(
        self,
        audio_path: Path,
        vocals_path: Path,
        background_path: Path,
        progress: ProgressCallback | None = None,
    ) -> None:
        model = self.load()
        device = resolve_device(self.device_choice)
        info = sf.info(str(audio_path))
        n_src, src_rate, src_channels = int(info.frames), int(info.samplerate), int(info.channels)
        model_rate, model_channels = int(model.samplerate), int(model.audio_channels)
        if src_channels not in (1, model_channels):
            raise InputError(
                f"demucs separation needs mono or {model_channels}-channel audio; "
                f"{audio_path.name} has {src_channels} channels"
            )
        if n_src == 0:
            raise InputError(f"{audio_path.name} holds no audio to separate")
        segment = model_segment(model)
        seg_len = int(model_rate * segment)  # exactly as apply_model computes it
        total = Resampler(src_rate, model_rate).output_length(n_src)
        grid = SegmentGrid(seg_len, int((1 - self.overlap) * seg_len), total)
        origins = shift_origins(self.shifts, model_rate)
        chunks = plan_chunks(n_src, src_rate, model_rate, grid, origins, self.chunk_seconds)
        stats = mixture_stats(audio_path)
        run = _Run(
            model=model, device=device, segment=segment, overlap=self.overlap, stats=stats, src_rate=src_rate,
            src_channels=src_channels, model_rate=model_rate, model_channels=model_channels,
        )  # fmt: skip
        t0 = time.perf_counter()
        processed = 0
        fmt = _wav_format(n_src, src_channels)
        with (
            sf.SoundFile(str(audio_path)) as reader,
            sf.SoundFile(str(vocals_path), "w", src_rate, src_channels, "FLOAT", format=fmt) as vocals_out,
            sf.SoundFile(str(background_path), "w", src_rate, src_channels, "FLOAT", format=fmt) as rest_out,
        ):
            for chunk in chunks:
                vocals, background = run.chunk_stems(reader, n_src, chunk)
                vocals_out.write(vocals)
                rest_out.write(background)
                processed += sum(end - start for start, end in chunk.windows)
                if progress is not None:
                    progress(chunk.src_hi / src_rate, n_src / src_rate)
        seconds = time.perf_counter() - t0
        self.last_run = {
            "device": device,
            "chunks": len(chunks),
            "audio_s": n_src / src_rate,
            "seconds": seconds,
            "rtf": seconds / (n_src / src_rate),
            "model_input_ratio": processed / (total * len(origins)),  # 1.0: no margin overhead
        }


@dataclass(frozen=True)
class _Run:
    """One separation's fixed facts; turns a planned chunk into the two stems' source-rate samples."""

    model: Any
    device: str
    segment: Any
    overlap: float
    stats: tuple[float, float]  # mean, std of the mono mixdown
    src_rate: int
    src_channels: int
    model_rate: int
    model_channels: int

    def chunk_stems(self, reader: sf.SoundFile, n_src: int, chunk: Chunk) -> tuple[np.ndarray, np.ndarray]:
        import torch
        from demucs.apply import apply_model

        mean, std = self.stats[0], self.stats[1] + 1e-8  # as demucs.api.Separator normalises
        to_model, to_src = (
            Resampler(self.src_rate, self.model_rate),
            Resampler(self.model_rate, self.src_rate),
        )
        # the model-rate input on [lo, hi), normalised; a shifted pass reads zeros before the track
        lo, hi = max(0, chunk.start), chunk.end
        a, b = to_model.input_range(lo, hi, n_src)
        reader.seek(a)
        mix = to_model.apply(reader.read(b - a, dtype="float32", always_2d=True), a, lo, hi)
        if self.src_channels == 1:
            mix = np.repeat(mix, self.model_channels, axis=1)
        mix = ((mix - mean) / std).astype(np.float32, copy=False)
        stems: Any = None
        for start, end in chunk.windows:  # one apply_model call per shift pass, on its own grid
            window = np.zeros((self.model_channels, end - start), dtype=np.float32)
            window[:, max(start, 0) - start :] = mix[max(start, 0) - lo : end - lo].T
            with torch.no_grad():
                out = apply_model(
                    self.model, torch.from_numpy(window)[None], shifts=0, split=True, overlap=self.overlap,
                    segment=self.segment, device=self.device, progress=False, num_workers=0,
                )[0]  # fmt: skip
            del window
            part = out[..., chunk.need_lo - start : chunk.need_hi - start]
            if stems is None:
                stems = part
            else:
                stems += part
            del out, part
        del mix
        # in place: this chunk's largest tensors are these stems (4 sources x channels x samples)
        stems.div_(len(chunk.windows)).mul_(std).add_(mean)  # every stem, as demucs does
        sources = list(self.model.sources)
        vocal = sources.index(VOCALS)
        background = torch.zeros_like(stems[vocal])
        for i in range(len(sources)):
            if i != vocal:
                background += stems[i]
        results = []
        for stem in (stems[vocal], background):
            data = to_src.apply(stem.T.numpy(), chunk.need_lo, chunk.src_lo, chunk.src_hi)
            if self.src_channels == 1:
                data = data.mean(axis=1, keepdims=True)
            results.append(np.ascontiguousarray(data, dtype=np.float32))
        return results[0], results[1]


# -- measuring (for benchmarks) ----------------------------------------------------------------------


def current_rss_bytes() -> int:
    """Resident set size now (Linux /proc), or the peak so far where /proc is unavailable."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """The process's peak resident set size so far (getrusage)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) * (1 if os.uname().sysname == "Darwin" else 1024)


def reset_peak_rss() -> bool:
    """Reset the kernel's resident-memory high-water mark (VmHWM) to the current RSS (Linux >= 4.0,
    /proc/self/clear_refs): the peak read after it is exact, with no sampling thread to starve. False
    where that is not possible. (getrusage's ru_maxrss cannot be reset, and a child's starts at its
    parent's RSS at fork time.)"""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def high_water_rss_bytes() -> int:
    """The resident-memory high-water mark since the process started or `reset_peak_rss()` (VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc), so an RSS baseline reflects live memory."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@dataclass(frozen=True)
class RunMeasurement:
    seconds: float
    audio_seconds: float
    rtf: float  # seconds of processing per second of audio
    baseline_rss_bytes: int  # resident memory just before the run
    peak_rss_bytes: int  # highest resident memory sampled during the run
    traced_peak_bytes: int | None = None  # peak of Python/numpy allocations (tracemalloc), when traced

    @property
    def peak_increase_bytes(self) -> int:
        return max(0, self.peak_rss_bytes - self.baseline_rss_bytes)


class _RssSampler:
    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.peak = current_rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, current_rss_bytes())

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss_bytes())


def measure_run(
    fn: Callable[[], object], audio_seconds: float, interval_s: float = 0.005, trace_allocations: bool = False
) -> RunMeasurement:
    """Wall time, real-time factor and peak resident memory of `fn()` (RSS sampled every `interval_s`
    by a thread; in a fresh process `peak_rss_bytes()` afterwards is the exact peak). With
    `trace_allocations`, also the peak of Python and numpy allocations above the start (tracemalloc:
    precise, but blind to torch's own tensors, and it slows Python-heavy code)."""
    release_free_memory()
    tracing = trace_allocations and not tracemalloc.is_tracing()
    if tracing:
        tracemalloc.start()
    traced_start = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    baseline = current_rss_bytes()
    t0 = time.perf_counter()
    try:
        with _RssSampler(interval_s) as sampler:
            fn()
        seconds = time.perf_counter() - t0
        traced = tracemalloc.get_traced_memory()[1] - traced_start if trace_allocations else None
    finally:
        if tracing:
            tracemalloc.stop()
    return RunMeasurement(
        seconds, audio_seconds, seconds / max(audio_seconds, 1e-9), baseline, sampler.peak, traced
    )


def measure_separation(
    separator: DemucsSeparator, audio_path: Path, out_dir: Path, trace_allocations: bool = False
) -> RunMeasurement:
    """Separate `audio_path` into `out_dir` and measure it (the model is loaded before timing)."""
    separator.load()
    out_dir.mkdir(parents=True, exist_ok=True)
    duration = sf.info(str(audio_path)).duration
    return measure_run(
        lambda: separator.separate(audio_path, out_dir / "vocals.wav", out_dir / "background.wav"),
        duration,
        trace_allocations=trace_allocations,
    )
