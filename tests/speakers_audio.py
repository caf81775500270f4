"""Multi-speaker test conversations spoken by espeak-ng voices, with their ground truth.

Each utterance is spoken by one voice (`espeak-ng -v VOICE -w`), trimmed of espeak's leading and trailing
silence, resampled to 16 kHz mono and placed after a pause. The truth is each utterance's span and
speaker; the words are the utterance's words with times spread over its span in proportion to their
length (what a recogniser's word times look like, without running one).
"""

from __future__ import annotations

import random
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from models.base import Word

RATE = 16_000

SENTENCES = [
    "The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.", "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.", "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.", "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.", "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.", "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.", "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.", "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.", "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.", "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.", "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.", "The swan dive was far short of perfect.",
    "The beauty of the view stunned the young boy.", "Two blue fish swam in the tank.",
    "Her purse was full of useless trash.", "The colt reared and threw the tall rider.",
    "Read verse out loud for pleasure.", "Hoist the load to your left shoulder.",
    "Take the winding path to reach the lake.", "Note closely the size of the gas tank.",
    "Wipe the grease off his dirty face.", "Mend the coat before you go out.",
    "The wrist was badly strained and hung limp.", "The stray cat gave birth to kittens.",
    "The young girl gave no clear response.", "The meal was cooked before the bell rang.",
    "What joy there is in living.", "A king ruled the state in the early days.",
]  # fmt: skip
SHORT_REPLIES = ["Yes, of course.", "No way.", "Really?", "I see.", "Right, go on.", "Sure.", "Not at all."]


@dataclass(frozen=True)
class Utterance:
    start: float
    end: float
    speaker: str  # the espeak-ng voice
    text: str


@dataclass(frozen=True)
class Conversation:
    path: Path  # 16 kHz mono wav
    duration: float
    utterances: tuple[Utterance, ...]
    words: tuple[Word, ...]

    @property
    def speakers(self) -> list[str]:
        return list(dict.fromkeys(u.speaker for u in self.utterances))


def speak(voice: str, text: str, speed: int = 165) -> np.ndarray:
    """One utterance at 16 kHz mono, espeak's silences at both ends trimmed."""
    import soxr

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "u.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(out), text], check=True)
        audio, rate = sf.read(str(out), dtype="float32")
    audio = soxr.resample(np.asarray(audio, dtype=np.float32), int(rate), RATE).astype(np.float32)
    loud = np.flatnonzero(np.abs(audio) > 0.01 * float(np.max(np.abs(audio))))
    return audio[loud[0] : loud[-1] + 1] if loud.size else audio


def _words(text: str, start: float, end: float) -> list[Word]:
    tokens = text.split()
    weights = np.array([len(t) + 1 for t in tokens], dtype=float)
    edges = start + (end - start) * np.concatenate([[0.0], np.cumsum(weights) / weights.sum()])
    return [
        Word(round(float(a), 3), round(float(b), 3), " " + t)
        for t, a, b in zip(tokens, edges, edges[1:], strict=False)
    ]


def build_conversation(
    script: list[tuple[str, str]],
    pauses: list[float],
    path: Path,
    lead_s: float = 0.5,
    level: float = 0.5,
    speeds: list[int] | None = None,
) -> Conversation:
    """Speak `script` ((voice, text) per utterance) with pauses[i] seconds of silence after utterance i,
    at speeds[i] words per minute (espeak-ng's default 165 when not given)."""
    pieces: list[np.ndarray] = [np.zeros(int(lead_s * RATE), np.float32)]
    cursor = lead_s
    utterances: list[Utterance] = []
    words: list[Word] = []
    for i, (voice, text) in enumerate(script):
        audio = speak(voice, text, speeds[i] if speeds else 165)
        audio = audio / max(float(np.max(np.abs(audio))), 1e-9) * level
        start, end = cursor, cursor + audio.size / RATE
        utterances.append(Utterance(round(start, 3), round(end, 3), voice, text))
        words.extend(_words(text, round(start, 3), round(end, 3)))
        pause = pauses[i] if i < len(pauses) else 0.5
        pieces += [audio, np.zeros(int(round(pause * RATE)), np.float32)]
        cursor = end + int(round(pause * RATE)) / RATE
    signal = np.concatenate(pieces)
    sf.write(str(path), signal, RATE, subtype="PCM_16")
    return Conversation(path, signal.size / RATE, tuple(utterances), tuple(words))


def random_conversation(
    voices: list[str],
    n_utterances: int,
    pause_range: tuple[float, float],
    path: Path,
    seed: int = 0,
    short_reply_every: int = 0,
) -> Conversation:
    """A conversation where the speaker changes at every utterance (never the same voice twice in a row),
    sentences drawn without repeats while they last; every `short_reply_every`-th utterance is a short
    reply."""
    rng = random.Random(seed)
    sentences = SENTENCES[:]
    rng.shuffle(sentences)
    script: list[tuple[str, str]] = []
    previous = None
    for i in range(n_utterances):
        voice = rng.choice([v for v in voices if v != previous]) if len(voices) > 1 else voices[0]
        previous = voice
        if short_reply_every and i % short_reply_every == short_reply_every - 1:
            text = rng.choice(SHORT_REPLIES)
        elif i < len(sentences):
            text = sentences[i]
        else:  # past the list: splice two sentences, so no utterance repeats another's audio exactly
            a, b = rng.sample(SENTENCES, 2)
            head, tail = a.rstrip(".").split(), b.split()
            text = " ".join(
                head[: rng.randint(2, max(2, len(head) - 2))] + tail[rng.randint(1, len(tail) - 2) :]
            )
        script.append((voice, text))
    pauses = [round(rng.uniform(*pause_range), 3) for _ in script]
    # speaking rate varies a little per utterance (as people's does): no two utterances share their audio
    speeds = [rng.randint(150, 180) for _ in script]
    return build_conversation(script, pauses, path, speeds=speeds)


def der(conversation: Conversation, turns: list[tuple[float, float, str]], collar: float = 0.0) -> float:
    """Diarization error rate (pyannote.metrics: missed speech + false alarm + confusion, optimal mapping
    of speaker labels) of `turns` against the conversation's utterances."""
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    reference, hypothesis = Annotation(), Annotation()
    for i, u in enumerate(conversation.utterances):
        reference[Segment(u.start, u.end), i] = u.speaker
    for i, (start, end, speaker) in enumerate(turns):
        hypothesis[Segment(start, end), i] = speaker
    return float(DiarizationErrorRate(collar=collar)(reference, hypothesis))
