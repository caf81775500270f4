"""The clip cache: synthesised clips by content hash, shared by every job that uses the same cache folder.

Key = hash of (synthesizer identity for the line's voice: route, model snapshot, voice, instructions,
parameters; language; exact text). Entries are written atomically (audio first, then its metadata, which
is what marks it complete), so concurrent and killed runs never leave an entry trusted half-written.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from core.errors import UpstreamError
from core.files import atomic_path, content_key, read_json, write_json_atomic

# Metadata key naming the consented speaker whose cloned voice made a clip: the synthesis stage writes it,
# revocation (cloning/revoke.py) purges the entries that carry it.
CLONE_SPEAKER = "clone_speaker"
# A clip the local TTS length guard flagged (metadata "guard") is kept, for the job that made it and its
# report, but a later run synthesises it again, at most GUARD_TRIES runs in all ("guard_tries" counts them);
# a retry that passes replaces it, and after the last try the flagged clip is used as it is. The synthesis
# stage passes `guard_tries(key)` to the engine, so an engine with fixed seeds (the local one) retries with
# seeds the earlier runs did not use. "guard_run" names the flow run that wrote the flagged entry: every
# task of that run (the batched synthesis, then the per-line finishing) uses it rather than retrying it.
GUARD = "guard"
GUARD_TRIES = 3
GUARD_RUN = "guard_run"
# How many times a retry replaced the entry's audio under the same key (absent: never). The clip's fit and
# the track key on it with the clip key (ClipRecord.audio_id), so a replaced clip is fitted and mixed again.
REVISION = "revision"


def current_run() -> str | None:
    """The Prefect flow run this code runs in (from a flow or any of its tasks, Dask workers included), or
    None outside a flow."""
    from prefect.runtime import flow_run

    return flow_run.get_id()


def clip_key(identity: dict[str, Any], language: str, text: str) -> str:
    return content_key("clip-v1", identity, language, text)


class ClipCache:
    """One run's view of the cache folder: an entry this run wrote is always a hit; a guard-flagged entry
    from an earlier run with tries left is a miss (see GUARD_TRIES). The run is the Prefect flow run in
    force at each call (`current_run`; `run` fixes it); outside a flow, this instance (entries it wrote)."""

    def __init__(self, root: Path, run: str | None = None) -> None:
        self.root = root / "clips"
        self.run = run
        self._written: set[str] = set()

    def _run(self) -> str | None:
        return self.run if self.run is not None else current_run()

    def for_run(self, run: str | None = None) -> ClipCache:
        """This cache (same folder, same entries written) as seen by `run`, by default the flow run in force
        here: for worker threads, which do not carry the flow run's context."""
        view = copy.copy(self)
        view.run = run if run is not None else self._run()
        return view

    def _paths(self, key: str) -> tuple[Path, Path]:
        d = self.root / key[:2]
        return d / f"{key}.wav", d / f"{key}.json"

    def get(self, key: str) -> tuple[Path, dict[str, Any]] | None:
        wav, meta_path = self._paths(key)
        try:
            meta = read_json(meta_path)
            info = sf.info(str(wav))
        except (OSError, ValueError, RuntimeError):
            return None
        if (
            info.frames <= 0
            or info.samplerate != meta.get("sample_rate")
            or info.frames != meta.get("frames")
        ):
            return None  # truncated or foreign file: not trusted, will be re-synthesised
        if (
            meta.get(GUARD)
            and not self._this_run(key, meta)
            and int(meta.get("guard_tries", 1)) < GUARD_TRIES
        ):
            return None  # flagged by the length guard in an earlier run: try it again
        return wav, meta

    def _this_run(self, key: str, meta: dict[str, Any]) -> bool:
        run = self._run()
        return key in self._written if run is None else meta.get(GUARD_RUN) == run

    def guard_tries(self, key: str) -> int:
        """How many runs made the entry under `key` and had it flagged by the length guard (0: no entry,
        or one that passed). The next try is number guard_tries + 1."""
        _, meta_path = self._paths(key)
        try:
            meta = read_json(meta_path)
            return int(meta.get("guard_tries", 1)) if isinstance(meta, dict) and meta.get(GUARD) else 0
        except (OSError, ValueError, TypeError):
            return 0

    def put(
        self, key: str, audio: np.ndarray, rate: int, meta: dict[str, Any]
    ) -> tuple[Path, dict[str, Any]]:
        if audio.size == 0 or not np.all(np.isfinite(audio)):
            raise UpstreamError("synthesised audio is empty or not finite", code="BadAudio")
        wav, meta_path = self._paths(key)
        previous: Any = None
        with contextlib.suppress(OSError, ValueError, TypeError):
            previous = read_json(meta_path)
        retried = isinstance(previous, dict) and bool(previous.get(GUARD))
        if retried:  # a retry replaces a flagged clip under the same key: what used it must see it changed
            meta = {**meta, REVISION: int(previous.get(REVISION, 0)) + 1}
        if meta.get(GUARD):
            tries = int(previous.get("guard_tries", 1)) + 1 if retried else 1
            run = self._run()
            meta = {**meta, "guard_tries": tries, **({GUARD_RUN: run} if run is not None else {})}
        with atomic_path(wav) as tmp:
            sf.write(str(tmp), audio.astype(np.float32), rate, subtype="FLOAT")
        meta = {**meta, "sample_rate": rate, "frames": int(audio.size)}
        write_json_atomic(meta_path, meta)
        self._written.add(key)
        return wav, meta

    def purge(self, predicate: Callable[[dict[str, Any]], bool]) -> list[Path]:
        """Delete every entry whose metadata satisfies `predicate` (e.g. made with a revoked speaker's
        cloned voice); returns the deleted entries' audio paths. The metadata goes first: an entry without
        it is never trusted, so a purge cut short leaves nothing a later run would use."""
        purged: list[Path] = []
        if not self.root.is_dir():
            return purged
        for meta_path in sorted(self.root.glob("*/*.json")):
            try:
                meta = read_json(meta_path)
            except (OSError, ValueError):
                continue
            if not isinstance(meta, dict) or not predicate(meta):
                continue
            meta_path.unlink(missing_ok=True)
            wav = meta_path.with_suffix(".wav")
            wav.unlink(missing_ok=True)
            purged.append(wav)
        return purged
