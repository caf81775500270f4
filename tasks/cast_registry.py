"""The cast registry: the same person across videos keeps their voice (`--cast-registry DIR`).

A folder of JSON files, one per person: a name, the voice chosen for them per TTS route, and their voice
print (models/speaker_embedding.py, with the encoder that made it). No audio is stored. A job's speaker
whose voice print matches a registered person (cosine similarity >= MATCH_THRESHOLD, the best match
when several do, each person given to one speaker at most) speaks with that person's voice; cast.json
records the person's name and the similarity. People are added from a finished job
(`python -m flows.cast add JOB_DIR SPEAKER --name NAME --registry DIR`), listed and removed there.

MATCH_THRESHOLD was measured by bench/cast_registry.py on espeak-ng voices (14 distinct variants, 8 male
and 6 female, 4 prints each of 3 two-sentence texts, about 15 s, as a job's speaker gives; 84 genuine
pairs, same voice saying other texts, and 1456 impostor pairs). espeak-ng variants are one formant
synthesizer and far closer to each other than people are: impostors reach 0.966 (en+m4 / en-gb+m7,
en+f2 / en-us+f5), genuine pairs go down to 0.960 clean and 0.950 with echo and noise at 20 dB SNR.
At 0.95: false accepts 1.0 % clean / 0.4 % noisy, false rejects 0 % / 0 %; at 0.93: FA 3.4 % / 2.5 %,
FR 0 %; at 0.96: FA 0.3 % / 0 %, FR 1.2 % / 3.6 %. With shorter prints (2 texts, about 10 s) genuine
pairs fell to 0.93 and 0.95 rejected 20 % of them, hence MIN_PRINT_S. A print from a clean recording
against one from the noisy condition scored 0.77-0.86 for the same voice: a registry match needs
similar recording conditions, and a miss only means the speaker is auto-cast. A wrong voice costs more
than a miss, so the threshold sits where false accepts end for voices less alike than espeak's.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audio.speech_reader import Samples
from core.errors import ConfigError
from core.files import read_json, write_json_atomic
from tasks.segment import Line

REGISTRY_VERSION = 1
MATCH_THRESHOLD = 0.95
PRINT_SAMPLE_S = 60.0  # the most speech per speaker a voice print reads (spread over the video)
MIN_PRINT_S = 8.0  # a speaker with less speech gets no print, and so no registry match (see MATCH_THRESHOLD)


@dataclass(frozen=True)
class Person:
    """A registered person."""

    name: str
    voices: dict[str, str]  # TTS route -> voice
    vector: np.ndarray = field(repr=False)  # unit voice print
    model: str  # the encoder that made the print (EMBEDDING_MODEL)
    seconds: float = 0.0  # speech the print was made from
    source: dict[str, Any] = field(default_factory=dict)  # job, speaker, video digest
    path: Path | None = None


def slug(name: str) -> str:
    text = re.sub(r"[^a-z0-9]+", "-", name.strip().lower()).strip("-")
    return text or "person"


def person_to_json(person: Person) -> dict[str, Any]:
    return {
        "version": REGISTRY_VERSION,
        "name": person.name,
        "voices": dict(sorted(person.voices.items())),
        "embedding_model": person.model,
        "seconds": round(person.seconds, 2),
        "source": person.source,
        "added": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "print": [round(float(x), 6) for x in person.vector],
    }


def _person(path: Path, data: Any) -> Person:
    from models.speaker_embedding import EMBEDDING_MODEL, EMBEDDING_SIZE

    where = f"cast registry {path.parent}: {path.name}"
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"].strip():
        raise ConfigError(f"{where} is not a registry entry (no name)")
    model = data.get("embedding_model")
    if model != EMBEDDING_MODEL:
        raise ConfigError(
            f"{where} holds a voice print of {model!r}, not {EMBEDDING_MODEL!r}: prints of another encoder "
            "cannot be compared; remove the person and add them again from a job"
        )
    vector = np.asarray(data.get("print", []), dtype=np.float32)
    if vector.shape != (EMBEDDING_SIZE,) or not np.all(np.isfinite(vector)) or not vector.any():
        raise ConfigError(f"{where}: its voice print is damaged; remove the person and add them again")
    voices = data.get("voices") or {}
    if not isinstance(voices, dict) or not all(isinstance(v, str) for v in voices.values()):
        raise ConfigError(f"{where}: `voices` must map a TTS route to a voice name")
    return Person(
        name=data["name"].strip(),
        voices={str(k): v for k, v in voices.items()},
        vector=vector / float(np.linalg.norm(vector)),
        model=model,
        seconds=float(data.get("seconds", 0.0)),
        source=dict(data["source"]) if isinstance(data.get("source"), dict) else {},
        path=path,
    )


def load_registry(folder: Path) -> list[Person]:
    """Every person in the registry folder; anything unreadable is one line naming the file."""
    if not folder.is_dir():
        raise ConfigError(f"cast registry {folder}: not a folder")
    people: list[Person] = []
    try:
        files = sorted(folder.glob("*.json"))
    except OSError as exc:
        raise ConfigError(f"cast registry {folder}: cannot be read ({exc.strerror or exc})") from None
    for path in files:
        try:
            data = read_json(path)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not valid JSON"
            raise ConfigError(f"cast registry {folder}: {path.name} cannot be read ({reason})") from None
        people.append(_person(path, data))
    names = [p.name.lower() for p in people]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"cast registry {folder}: two entries are named {name!r}")
    return people


def find_person(people: Sequence[Person], name: str) -> Person | None:
    return next((p for p in people if p.name.lower() == name.strip().lower()), None)


def add_person(folder: Path, person: Person, replace: bool = False) -> Path:
    """Write a person's entry (atomically); a name already registered is refused unless `replace`."""
    from models.speaker_embedding import EMBEDDING_MODEL

    if person.model != EMBEDDING_MODEL:
        raise ConfigError(f"a voice print of {person.model!r} cannot join a registry of {EMBEDDING_MODEL!r}")
    folder.mkdir(parents=True, exist_ok=True)
    people = load_registry(folder)
    existing = find_person(people, person.name)
    if existing is not None and not replace:
        raise ConfigError(
            f"{person.name!r} is already in the cast registry (remove them first, or --replace)"
        )
    path = existing.path if existing is not None and existing.path else folder / f"{slug(person.name)}.json"
    n = 2
    while existing is None and path.exists():
        path = folder / f"{slug(person.name)}-{n}.json"
        n += 1
    write_json_atomic(path, person_to_json(person))
    return path


def remove_person(folder: Path, name: str) -> Path:
    person = find_person(load_registry(folder), name)
    if person is None or person.path is None:
        raise ConfigError(f"no {name!r} in the cast registry {folder}")
    person.path.unlink()
    return person.path


def speaker_print(samples: Samples, lines: Sequence[Line]) -> tuple[np.ndarray, float] | None:
    """The voice print of one speaker's lines (at most PRINT_SAMPLE_S seconds, spread over the video) and
    the seconds of speech it was made from; None with less than MIN_PRINT_S of speech. `samples`: the
    job's speech at 16 kHz (audio/speech_reader.py), read span by span."""
    from audio.speech_reader import RATE, excerpt
    from models.speaker_embedding import embed
    from tasks.cast import spread_spans

    spans = spread_spans(lines, PRINT_SAMPLE_S)
    seconds = sum(b - a for a, b in spans)
    if seconds < MIN_PRINT_S:
        return None
    return embed(excerpt(samples, spans), RATE), seconds


def speaker_prints(samples: Samples, lines: Sequence[Line]) -> dict[str, np.ndarray]:
    """Speaker -> voice print, for the speakers with enough speech."""
    from tasks.cast import speakers_of

    out = {}
    for speaker in speakers_of(lines):
        made = speaker_print(samples, [ln for ln in lines if ln.speaker == speaker])
        if made is not None:
            out[speaker] = made[0]
    return out


def match_speakers(
    prints: Mapping[str, np.ndarray], people: Sequence[Person], threshold: float = MATCH_THRESHOLD
) -> dict[str, tuple[Person, float]]:
    """Speaker -> (registered person, similarity) for the speakers whose print matches someone: pairs at
    or above `threshold`, best first, each speaker and each person used once."""
    from models.speaker_embedding import similarity

    pairs = sorted(
        (
            (similarity(vec, p.vector), speaker, i)
            for speaker, vec in prints.items()
            for i, p in enumerate(people)
        ),
        key=lambda t: (-t[0], t[1], t[2]),
    )
    matched: dict[str, tuple[Person, float]] = {}
    taken: set[int] = set()
    for score, speaker, i in pairs:
        if score < threshold:
            break
        if speaker in matched or i in taken:
            continue
        matched[speaker] = (people[i], score)
        taken.add(i)
    return matched
