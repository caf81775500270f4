"""Speaker diarization: who speaks when. The role (`Diarizer`), its records, and the offline default engine.

The default engine (`EmbeddingDiarizer`) needs no download and runs on CPU:

1. speech: the spans the caller knows hold speech (a recogniser's words), else the whole file; either way
   cut at the pauses the audio itself shows (a recogniser's word times often run across a quick turn);
2. segments: each stretch of speech between pauses, cut into pieces of at most SEGMENT_MAX_S;
3. one speaker embedding per segment: resemblyzer's bundled GE2E encoder (models.speaker_embedding's
   encoder, loaded once per process), run over the segment's frames of one mel spectrogram of the file,
   all segments in one batched pass;
4. clustering: spectral clustering of the cosine affinities of the segments long enough for a reliable
   embedding, the number of speakers estimated by the eigengap of the affinity graph, pruned per row
   (auto-tuned as in Park et al. 2019, "Auto-tuning spectral clustering for speaker diarization using
   normalized maximum eigengap"); one speaker when even the two most different groups sound alike;
5. short segments ("Yes.") join the speaker whose centroid they are closest to, and a segment whose
   neighbours on both sides are one other speaker and whose own vote is weak takes theirs.

Speaker hints (`num_speakers`, or `min_speakers`/`max_speakers`) bound or fix the count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from audio.speech_reader import Samples, SpeechReader
from core.errors import ConfigError
from models.base import ProgressCallback

RATE = 16_000  # Hz: what the encoder and the analysis audio use
HOP_S = 0.01  # mel frame hop (resemblyzer's 10 ms)
WINDOW_S = 0.025
N_MELS = 40
MEL_BLOCK_FRAMES = 30_000  # frames (5 minutes) per block of the mel and level analysis

SEGMENT_MAX_S = 8.0  # longer stretches of speech are cut into pieces of about SEGMENT_TARGET_S
SEGMENT_TARGET_S = 4.0
RELIABLE_S = 1.5  # segments at least this long vote in the clustering; shorter ones are assigned after
MIN_CLUSTER_SEGMENTS = 3  # an estimated speaker has at least this many reliable segments
SPLIT_SILHOUETTE = 0.2  # see cluster_speakers
SPLIT_FULL_N = 16
SMALL_SPLIT_SIMILARITY = 0.7  # see _small_two_way
MIN_SEGMENT_S = 0.12  # shorter scraps of speech are not embedded at all (they inherit a neighbour's label)
PAUSE_MIN_S = 0.12  # a quiet run this long inside speech is a pause (where a turn may change)
QUIET_BELOW_DB = 30.0  # a frame is quiet this far under the speech's loud level (its 95th percentile)
TURN_GAP_FILL_S = 0.3  # one speaker's segments closer than this are one turn
# A recogniser's first word time comes late (faster-whisper tiny.en: by 0.1-0.2 s on espeak speech; a
# DER of 9 % was 7 points of speech missed at turn starts, 1.4 of confusion; its end times were late, not
# early): each given span starts this much earlier and the audio's own pauses trim it back to where the
# voice starts. Widening the ends too measured worse (false alarm on trailing breath, close voices 4.8 to
# 5.4 %). Whisper words, three quick speakers: 9.0 % -> 2.7 %; script word times 2.0 % -> 1.9 %.
SPAN_EDGE_S = 0.3
MAX_SPEAKERS_DEFAULT = 8
ENGINE_VERSION = 2  # 2: given spans start SPAN_EDGE_S earlier


@dataclass(frozen=True)
class Turn:
    """A stretch of time (seconds) during which one speaker talks. Labels are the engine's own; the tasks
    layer renames them S1, S2, ... in order of first appearance."""

    start: float
    end: float
    speaker: str


@dataclass(frozen=True)
class SpeakerHints:
    """What the user knows about the number of speakers. `num`: exactly that many; else between `min`
    and `max` (None: the engine's own ceiling)."""

    num: int | None = None
    min: int = 1
    max: int | None = None

    @classmethod
    def of(cls, num: int | None = None, min_: int | None = None, max_: int | None = None) -> SpeakerHints:
        """Validated hints; a ConfigError names the contradiction."""
        for name, value in (("num_speakers", num), ("min_speakers", min_), ("max_speakers", max_)):
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1 (got {value})")
        if min_ is not None and max_ is not None and min_ > max_:
            raise ConfigError(f"min_speakers ({min_}) is more than max_speakers ({max_})")
        if num is not None and (
            (min_ is not None and num < min_) or (max_ is not None and num > max_)
        ):  # fmt: skip
            raise ConfigError(f"num_speakers ({num}) is outside min_speakers..max_speakers")
        return cls(num=num, min=min_ or 1, max=max_)

    def bounds(self, items: int) -> tuple[int, int]:
        """The range of speaker counts to consider for `items` segments (never more than there are)."""
        if self.num is not None:
            return min(self.num, max(items, 1)), min(self.num, max(items, 1))
        high = min(self.max or MAX_SPEAKERS_DEFAULT, max(items, 1))
        return min(self.min, high), high

    def to_json(self) -> dict[str, int | None]:
        return {"num": self.num, "min": self.min, "max": self.max}


class Diarizer(Protocol):
    name: str

    def identity(self) -> dict[str, Any]:
        """Engine, model and parameters: everything besides the audio and the hints that determines the
        turns (for cache keys)."""
        ...

    def diarize(
        self,
        audio_path: Path,
        speech: Sequence[tuple[float, float]] | None = None,
        hints: SpeakerHints | None = None,
        progress: ProgressCallback | None = None,
    ) -> list[Turn]:
        """Turns of `audio_path` (any rate; mixed to mono), sorted by start and not overlapping for this
        engine (another engine may report overlapping speech). `speech`: spans (seconds) known to hold
        speech, e.g. a recogniser's words (each word its own span, so turns can change between words);
        None: find speech in the audio. Time outside the spans is never attributed to a speaker. `hints`: None
        is SpeakerHints() (the count estimated)."""
        ...


# -- audio ------------------------------------------------------------------------------------------------


def load_audio(path: Path) -> np.ndarray:
    """Mono float32 at RATE."""
    import soundfile as sf

    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = np.asarray(audio.mean(axis=1), dtype=np.float32)
    if int(rate) != RATE:
        import soxr

        mono = soxr.resample(mono, int(rate), RATE).astype(np.float32)
    return mono


def mel_frames(samples: Samples, f0: int, f1: int) -> np.ndarray:
    """Power mel spectrogram frames [f0, f1) (frames x N_MELS) exactly as resemblyzer computes them for
    the whole file: the centred frames of the zero-padded signal, cut out by hand, so a segment's frames
    are computed from its own samples (a whole film's STFT took GBs; its mel spectrogram 115 MB)."""
    import librosa

    n_fft, hop = int(RATE * WINDOW_S), int(RATE * HOP_S)
    out = np.empty((max(0, f1 - f0), N_MELS), dtype=np.float32)
    block, half = MEL_BLOCK_FRAMES, n_fft // 2
    for b0 in range(f0, f1, block):
        b1 = min(f1, b0 + block)
        piece = samples.read(b0 * hop - half, (b1 - 1) * hop + n_fft - half)
        mel = librosa.feature.melspectrogram(
            y=piece, sr=RATE, n_fft=n_fft, hop_length=hop, n_mels=N_MELS, center=False
        )
        out[b0 - f0 : b1 - f0] = mel.T
    return out


def frame_levels(samples: Samples) -> np.ndarray:
    """RMS level (dBFS) per HOP_S frame over a WINDOW_S window centred on the frame."""
    hop, win = int(RATE * HOP_S), int(RATE * WINDOW_S)
    n = samples.size // hop + 1
    out = np.empty(n, dtype=np.float32)
    # a block of frames at a time: a whole film's running sum in float64 would take GBs
    for f0 in range(0, n, MEL_BLOCK_FRAMES):
        f1 = min(n, f0 + MEL_BLOCK_FRAMES)
        lo, hi = f0 * hop - win // 2, (f1 - 1) * hop + win - win // 2
        piece = samples.read(lo, hi).astype(np.float64)
        power = np.concatenate([[0.0], np.cumsum(piece**2)])
        starts = np.arange(f1 - f0) * hop
        energy = (power[starts + win] - power[starts]) / win
        out[f0:f1] = 10 * np.log10(energy + 1e-12)
    return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index runs where mask is True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def speech_frames(
    levels: np.ndarray, speech: Sequence[tuple[float, float]] | None, duration: float
) -> np.ndarray:
    """Per frame: inside the given speech (all frames when None) and not inside a pause of the audio."""
    n = levels.size
    given = np.zeros(n, dtype=bool)
    spans = [(0.0, duration)] if speech is None else speech
    edge = 0.0 if speech is None else SPAN_EDGE_S  # see SPAN_EDGE_S
    for start, end in spans:
        a = max(0, int(math.floor((start - edge) / HOP_S)))
        b = min(n, int(math.ceil(end / HOP_S)))
        given[a:b] = True
    if not given.any():
        return given
    loud = float(np.percentile(levels[given], 95))
    floor = float(np.percentile(levels, 5))
    threshold = max(loud - QUIET_BELOW_DB, floor + 6.0) if loud - floor > 12.0 else loud - QUIET_BELOW_DB
    quiet = levels < threshold
    pause = np.zeros(n, dtype=bool)
    min_pause = int(round(PAUSE_MIN_S / HOP_S))
    for a, b in _runs(quiet):
        if b - a >= min_pause:
            pause[a:b] = True
    return given & ~pause


@dataclass(frozen=True)
class Segment:
    start: int  # frame index
    stop: int

    @property
    def seconds(self) -> float:
        return (self.stop - self.start) * HOP_S


def segments_of(voiced: np.ndarray) -> list[Segment]:
    """Each run of speech cut into pieces of at most SEGMENT_MAX_S; scraps under MIN_SEGMENT_S dropped."""
    out: list[Segment] = []
    target, most = int(SEGMENT_TARGET_S / HOP_S), int(SEGMENT_MAX_S / HOP_S)
    for a, b in _runs(voiced):
        if (b - a) * HOP_S < MIN_SEGMENT_S:
            continue
        pieces = 1 if b - a <= most else math.ceil((b - a) / target)
        edges = np.linspace(a, b, pieces + 1).round().astype(int)
        out.extend(Segment(int(s), int(e)) for s, e in zip(edges, edges[1:], strict=False))
    return out


# -- embeddings -------------------------------------------------------------------------------------------


def embed_segments(samples: Samples, segments: Sequence[Segment], batch: int = 64) -> np.ndarray:
    """One unit GE2E embedding per segment, from the segment's own mel frames (level-normalised as
    resemblyzer normalises an utterance), in batched LSTM passes over length-sorted segments; each
    segment's samples are read when its batch runs."""
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence

    from models.speaker_embedding import _encoder

    if not segments:
        return np.zeros((0, 256), dtype=np.float32)
    encoder = _encoder()
    order = sorted(range(len(segments)), key=lambda i: segments[i].stop - segments[i].start, reverse=True)
    out = np.zeros((len(segments), 256), dtype=np.float32)
    hop = int(RATE * HOP_S)
    with torch.inference_mode():
        for lo in range(0, len(order), batch):
            idx = order[lo : lo + batch]
            lengths = [segments[i].stop - segments[i].start for i in idx]
            block = np.zeros((len(idx), lengths[0], N_MELS), dtype=np.float32)
            for row, i in enumerate(idx):
                frames = mel_frames(samples, segments[i].start, segments[i].stop)
                # resemblyzer brings each utterance to -30 dBFS; a power mel scales with the gain squared
                wave = samples.read(segments[i].start * hop, min(segments[i].stop * hop, samples.size))
                rms = float(np.sqrt(np.mean(wave.astype(np.float64) ** 2))) if wave.size else 0.0
                gain = 10 ** (-30 / 20) / max(rms, 1e-6)
                block[row, : frames.shape[0]] = frames * gain**2
            packed = pack_padded_sequence(torch.from_numpy(block), lengths, batch_first=True)
            _, (hidden, _) = encoder.lstm(packed)
            raw = encoder.relu(encoder.linear(hidden[-1]))
            vectors = raw / torch.clamp(torch.norm(raw, dim=1, keepdim=True), min=1e-9)
            out[idx] = vectors.numpy()
    return out


# -- clustering -------------------------------------------------------------------------------------------


def _unit(x: np.ndarray) -> np.ndarray:
    return np.asarray(x / np.clip(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9, None), dtype=np.float32)


def _refine(y: np.ndarray, labels: np.ndarray, rounds: int = 10) -> np.ndarray:
    """A few rounds of spherical k-means from `labels` (fixes what a greedy split put on the wrong side);
    a cluster is never emptied."""
    k = int(labels.max()) + 1
    for _ in range(rounds):
        centroids = _unit(np.stack([y[labels == c].mean(axis=0) for c in range(k)]))
        new = np.argmax(y @ centroids.T, axis=1)
        if np.array_equal(new, labels) or np.bincount(new, minlength=k).min() == 0:
            break
        labels = new
    return labels


def _split(y: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Two-way split of unit rows (Ward, then spherical k-means) and its cosine silhouette."""
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.metrics import silhouette_score

    labels = AgglomerativeClustering(n_clusters=2, linkage="ward").fit_predict(y)
    labels = _refine(y, labels)
    if np.bincount(labels, minlength=2).min() < 1:
        return None
    return labels, float(silhouette_score(y, labels, metric="cosine"))


def _two_way(x: np.ndarray) -> tuple[np.ndarray, float, float] | None:
    """The best split of one cluster's embeddings in two, its silhouette, and the silhouette it must
    reach to count as two speakers. The embeddings are centred on the cluster's own mean first: what
    all its segments share (the recording, the family of voices) hides what tells its speakers apart."""
    if len(x) < 2 * MIN_CLUSTER_SEGMENTS:
        return _small_two_way(x)
    split = _split(_unit(x - x.mean(axis=0)))
    if split is None or np.bincount(split[0], minlength=2).min() < MIN_CLUSTER_SEGMENTS:
        return None
    # a split of few segments finds structure in noise: the bar rises as 1/sqrt(n) below SPLIT_FULL_N
    return split[0], split[1], SPLIT_SILHOUETTE * math.sqrt(max(1.0, SPLIT_FULL_N / len(x)))


def _small_two_way(x: np.ndarray) -> tuple[np.ndarray, float, float] | None:
    """Too few segments for a silhouette to mean anything (a short clip, a few lines each): split only
    when there are at least three and the two halves are plainly two voices, their mean prints less alike
    than SMALL_SPLIT_SIMILARITY. Measured on espeak-ng clips of 1-4 lines: a woman's and a man's halves
    0.58-0.59; one voice's halves 0.73-0.79 from three or more segments, but as low as 0.61 from two
    short ones. Returned in _two_way's form: the margin over the bar is what cluster_speakers compares."""
    if len(x) < 3:  # two short segments of one voice score as low as 0.61: no split from two
        return None
    from sklearn.cluster import AgglomerativeClustering

    y = _unit(x)
    labels = _refine(y, AgglomerativeClustering(n_clusters=2, linkage="ward").fit_predict(y))
    if np.bincount(labels, minlength=2).min() < 1:
        return None
    a, b = _unit(x[labels == 0].mean(axis=0)[None])[0], _unit(x[labels == 1].mean(axis=0)[None])[0]
    similarity = float(a @ b)
    return labels, SMALL_SPLIT_SIMILARITY - similarity, 0.0


def cluster_speakers(embeddings: np.ndarray, hints: SpeakerHints = SpeakerHints()) -> np.ndarray:
    """Speaker index per embedding (unit rows), the count estimated unless `hints.num` fixes it.

    Divisive: start from one speaker and split the cluster whose best two-way split separates best
    (silhouette on the cluster's centred embeddings), while that silhouette reaches SPLIT_SILHOUETTE
    (a split of one voice's segments scores about 0.14 on espeak-ng voices, two close male voices about
    0.26, a man and a woman 0.5) or while the hints ask for more speakers. Splitting top-down finds the
    close voices inside a group that a flat criterion sees as one (two women beside a man)."""
    n = len(embeddings)
    if n == 0:
        return np.zeros(0, dtype=int)
    low, high = hints.bounds(n)
    labels = np.zeros(n, dtype=int)
    count = 1
    cache: dict[int, tuple[np.ndarray, float, float] | None] = {}
    while count < high:
        best: tuple[float, int, np.ndarray] | None = None
        for c in range(count):
            if c not in cache:
                cache[c] = _two_way(embeddings[labels == c])
            split = cache[c]
            if split is not None and (best is None or split[1] - split[2] > best[0]):
                best = (split[1] - split[2], c, split[0])
        if best is None or (best[0] < 0 and count >= low):
            break
        score, c, sub = best
        members = np.flatnonzero(labels == c)
        labels[members[sub == 1]] = count
        cache.pop(c, None)
        count += 1
    if count > 1:
        labels = _refine(_unit(embeddings - embeddings.mean(axis=0)), labels)
    return labels


def _turns(segments: Sequence[Segment], labels: np.ndarray) -> list[Turn]:
    """Segments to turns: labels renamed SPEAKER_00, ... in order of first appearance, one speaker's
    consecutive segments closer than TURN_GAP_FILL_S joined."""
    names: dict[int, str] = {}
    turns: list[Turn] = []
    for seg, label in sorted(zip(segments, labels.tolist(), strict=True), key=lambda p: p[0].start):
        name = names.setdefault(label, f"SPEAKER_{len(names):02d}")
        start, end = round(seg.start * HOP_S, 3), round(seg.stop * HOP_S, 3)
        if turns and turns[-1].speaker == name and start - turns[-1].end <= TURN_GAP_FILL_S:
            turns[-1] = Turn(turns[-1].start, end, name)
        else:
            turns.append(Turn(start, end, name))
    return turns


class EmbeddingDiarizer:
    """The offline default: GE2E embeddings of pause-delimited speech, clustered (see the module doc)."""

    name = "embedding"

    def identity(self) -> dict[str, Any]:
        from models.speaker_embedding import EMBEDDING_MODEL

        return {
            "engine": self.name,
            "version": ENGINE_VERSION,
            "model": EMBEDDING_MODEL,
            "segment_max_s": SEGMENT_MAX_S,
            "reliable_s": RELIABLE_S,
            "pause_min_s": PAUSE_MIN_S,
            "split_silhouette": SPLIT_SILHOUETTE,
        }

    def diarize(
        self,
        audio_path: Path,
        speech: Sequence[tuple[float, float]] | None = None,
        hints: SpeakerHints | None = None,
        progress: ProgressCallback | None = None,
    ) -> list[Turn]:
        with SpeechReader(audio_path) as samples:  # read a block at a time (audio/speech_reader.py)
            voiced = speech_frames(frame_levels(samples), speech, samples.duration)
            segments = segments_of(voiced)
            if progress:
                progress(0.0, 1.0)
            if not segments:
                return []
            embeddings = embed_segments(samples, segments)
        labels = assign_segments(embeddings, [s.seconds for s in segments], hints or SpeakerHints())
        if progress:
            progress(1.0, 1.0)
        return _turns(segments, labels)


def assign_segments(embeddings: np.ndarray, seconds: Sequence[float], hints: SpeakerHints) -> np.ndarray:
    """Speaker index per segment: the reliable (long) segments clustered, the short ones given the speaker
    whose centroid they are closest to (in the space the clustering used)."""
    lengths = np.asarray(seconds, dtype=float)
    reliable = lengths >= RELIABLE_S
    if reliable.sum() < 2:  # too little to cluster: the longest segments decide
        reliable = lengths >= np.sort(lengths)[-min(len(lengths), 2)]
    labels = np.zeros(len(embeddings), dtype=int)
    if reliable.sum() < 2:
        return labels
    core = embeddings[reliable]
    core_labels = cluster_speakers(core, hints)
    labels[reliable] = core_labels
    if (~reliable).any() and core_labels.max() > 0:
        mean = core.mean(axis=0)
        centred = _unit(core - mean)
        centroids = _unit(
            np.stack([centred[core_labels == c].mean(axis=0) for c in range(core_labels.max() + 1)])
        )
        labels[~reliable] = np.argmax(_unit(embeddings[~reliable] - mean) @ centroids.T, axis=1)
    return labels
