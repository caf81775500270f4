"""The cast: who speaks in the video and with which voice (cast.json in the job folder).

One entry per speaker of the plan (segments.json `speaker`): lines, seconds of speech, the median pitch
and the sex estimated from it, the voice per TTS route, how that voice was chosen, whether it is cloned.

Who decides a speaker's voice, first match wins (a line's own `voice` in segments.json is above all of
these, in tasks/synthesize.JobVoices):

1. `--cast S1=Ethan,...` (or a file): the job's explicit per-speaker choice;
2. cast.json as edited by the user (a voice or name that differs from what the job wrote, recognised by
   the `auto_hash` written beside it, as lines.<lang>.json does): kept on every re-run, never overwritten;
3. the cast registry (`--cast-registry DIR`): a speaker whose voice print matches a registered person gets
   that person's voice, so a series keeps its voices (tasks/cast_registry.py);
4. `--voice X` given: every other speaker speaks with X ("everyone -> X");
5. auto-casting: the voice the job chose for this speaker before (cast.json, unedited; so moving one line
   to another speaker does not re-cast, and re-voice, everyone), else a new pick: every speaker a
   different catalogue voice fitting the estimated sex, same-sex voices spread across the catalogue, the
   engine's default voice first (a one-speaker job keeps the default voice when its sex fits, and so its
   cached clips). No speech to measure (sex unknown): voices of either sex, the default first.

A job with one designed or cloned voice (`--voice-design`, `--clone`) casts nothing: every speaker is
that voice (cast.json records it). A clip's cache key is its voice and text, so a re-run re-synthesises
exactly the lines whose speaker's voice changed (or that moved to a speaker with another voice).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from prefect import task

from audio.speech_reader import RATE as SPEECH_RATE
from audio.speech_reader import ArrayReader, Samples, SpeechReader, excerpt
from core.config import CLONE_EVERY_LINE, DubConfig
from core.errors import ConfigError
from core.files import content_key, is_fresh, mark_fresh, read_json, write_json_atomic
from core.progress import stage_logger
from models.registry import VoiceInfo, tts_engine
from tasks.media import STAGE
from tasks.segment import Line

if TYPE_CHECKING:
    from tasks.cast_registry import Person

CAST_FILE = "cast.json"
CAST_VERSION = 1

# Sex from the median F0 of the speaker's voiced frames (pYIN, 60-400 Hz). Adult speaking F0 is about
# 85-180 Hz for men and 165-255 Hz for women; measured with pYIN on espeak-ng voices (two sentences each):
# the male variants m1-m7, Andy, klatt, Mike and the default voices of en, en-us, de at 95-106 Hz, the
# female variants f2-f5 and Annie at 179-241 Hz. Between the two limits the estimate says "unknown"
# (casting then picks from either sex) rather than guess.
MALE_MAX_HZ = 150.0
FEMALE_MIN_HZ = 170.0
PITCH_FMIN_HZ, PITCH_FMAX_HZ = 60.0, 400.0
PITCH_RATE = 16_000
MIN_VOICED_S = 1.0  # fewer voiced seconds than this: sex unknown
PITCH_SAMPLE_S = 30.0  # the most speech per speaker the pitch estimate reads (pYIN runs ~15x real time)
SEXES = ("F", "M")
UNKNOWN = "unknown"

# How a route's voice was chosen (cast.json `chosen_by`)
BY_CAST, BY_EDIT, BY_REGISTRY, BY_VOICE, BY_AUTO = "--cast", "cast.json", "registry", "--voice", "auto"
BY_CLONE, BY_DESIGN = "clone", "voice-design"

# Catalogue voices auto-casting leaves out when others fit (a child's voice for an adult, a dialect voice
# that speaks its dialect for Chinese text, special-purpose voices); `--cast` and `--voice` may name them.
AVOID_NOTES = ("child", "kid", "girl", "dialect", "sleep", "commentator")


@dataclass(frozen=True)
class SpeakerEstimate:
    """What the audio says about one speaker of the plan."""

    speaker: str
    lines: int
    seconds: float  # total speech time of the speaker's lines
    f0_median_hz: float | None  # None: too little voiced speech to measure
    sex: str  # "F", "M" or "unknown"


def speakers_of(lines: Sequence[Line]) -> list[str]:
    """The plan's speakers in order of first appearance."""
    return list(dict.fromkeys(line.speaker for line in lines))


def spread_spans(lines: Sequence[Line], limit_s: float) -> list[tuple[float, float]]:
    """At most `limit_s` seconds of the lines' spans, taken evenly over the whole video (a long film is
    measured across its length, not its first minutes), in time order."""
    spans = [(ln.start, ln.end) for ln in sorted(lines, key=lambda ln: ln.start) if ln.end > ln.start]
    total = sum(b - a for a, b in spans)
    if total <= limit_s:
        return spans
    share = limit_s / total
    chosen, credit = [], spans[0][1] - spans[0][0]  # the first line is taken
    for a, b in spans:  # each line earns its share of the budget; a line is taken once it is paid for
        credit += (b - a) * share
        if credit >= b - a:
            chosen.append((a, b))
            credit -= b - a
    out, left = [], limit_s
    for a, b in chosen or spans[:1]:
        if left <= 0:
            break
        out.append((a, min(b, a + left)))
        left -= min(b - a, left)
    return out


def median_pitch(audio: np.ndarray, rate: int) -> tuple[float | None, float]:
    """(median F0 of the voiced frames in Hz, voiced seconds) of mono speech, by pYIN at 16 kHz."""
    import librosa
    import soxr

    if audio.size < rate * 0.1:
        return None, 0.0
    wav = audio if rate == PITCH_RATE else soxr.resample(audio, rate, PITCH_RATE).astype(np.float32)
    hop = 256
    f0, voiced, _ = librosa.pyin(
        wav, fmin=PITCH_FMIN_HZ, fmax=PITCH_FMAX_HZ, sr=PITCH_RATE, frame_length=1024, hop_length=hop
    )
    mask = voiced & np.isfinite(f0)
    seconds = float(mask.sum()) * hop / PITCH_RATE
    if not mask.any():
        return None, 0.0
    return float(np.median(f0[mask])), seconds


def sex_from_pitch(f0_hz: float | None, voiced_s: float) -> str:
    if f0_hz is None or voiced_s < MIN_VOICED_S:
        return UNKNOWN
    if f0_hz <= MALE_MAX_HZ:
        return "M"
    if f0_hz >= FEMALE_MIN_HZ:
        return "F"
    return UNKNOWN


def estimate_speakers(samples: Samples, lines: Sequence[Line]) -> dict[str, SpeakerEstimate]:
    """Per speaker of `lines` (first appearance order): line count, seconds of speech, median pitch and
    the sex it suggests, measured on `samples` (the job's speech at 16 kHz: separated vocals, or the
    analysis copy) over at most PITCH_SAMPLE_S seconds of the speaker's lines, read span by span."""
    out: dict[str, SpeakerEstimate] = {}
    for speaker in speakers_of(lines):
        own = [ln for ln in lines if ln.speaker == speaker]
        seconds = sum(max(0.0, ln.end - ln.start) for ln in own)
        f0, voiced_s = median_pitch(excerpt(samples, spread_spans(own, PITCH_SAMPLE_S)), SPEECH_RATE)
        out[speaker] = SpeakerEstimate(
            speaker=speaker,
            lines=len(own),
            seconds=round(seconds, 3),
            f0_median_hz=None if f0 is None else round(f0, 1),
            sex=sex_from_pitch(f0, voiced_s),
        )
    return out


# -- auto-casting ----------------------------------------------------------------------------------------


def castable(voice: VoiceInfo) -> bool:
    """A catalogue voice auto-casting may give an adult speaker (see AVOID_NOTES)."""
    from models.voices import VOICES_BY_NAME

    note = voice.note.lower()
    if any(word in note for word in AVOID_NOTES):
        return False
    system = VOICES_BY_NAME.get(voice.name)  # DashScope's dialect voices are noted by their place only
    return not (system is not None and system.dialect and system.note == voice.note)


def candidates(voices: Sequence[VoiceInfo], sex: str, default_voice: str | None) -> list[str]:
    """The voices auto-casting picks from for a speaker of `sex`, in catalogue order with the engine's
    default voice first when it is one of them: the castable voices of that sex, else every voice of
    that sex, else (sex unknown, or none of that sex) every castable voice."""
    fitting = [v for v in voices if castable(v)]
    if sex in SEXES:
        same = [v for v in fitting if v.sex == sex] or [v for v in voices if v.sex == sex]
        fitting = same or fitting
    names = [v.name for v in (fitting or list(voices))]
    if default_voice in names:
        names.remove(default_voice)
        names.insert(0, default_voice)
    return names


def _farthest(names: list[str], taken: Mapping[str, int]) -> str:
    """The voice of `names` used least, then farthest (in catalogue position) from those already used,
    then earliest: picks spread over the catalogue instead of bunching at its start."""
    least = min(taken.get(n, 0) for n in names)
    pool = [i for i, n in enumerate(names) if taken.get(n, 0) == least]
    used = [i for i, n in enumerate(names) if taken.get(n, 0) > least]
    if not used:
        return names[pool[0]]
    return names[max(pool, key=lambda i: (min(abs(i - j) for j in used), -i))]


def auto_cast(
    speakers: Mapping[str, SpeakerEstimate],
    voices: Sequence[VoiceInfo],
    fixed: Mapping[str, str],
    default_voice: str | None = None,
) -> tuple[dict[str, str], list[str]]:
    """A voice for every speaker not in `fixed` (speaker -> voice decided otherwise), and warning lines.

    Deterministic: speakers with the most speech choose first; each gets an unused voice of its estimated
    sex, as far in the catalogue from the voices already used (fixed ones included) as it allows, the
    default voice first. When a sex has more speakers than voices, voices are reused (least used first)
    and a warning says so."""
    if not voices:
        raise ConfigError("the TTS engine lists no voices to cast from")
    taken: dict[str, int] = {}
    for voice in fixed.values():
        taken[voice] = taken.get(voice, 0) + 1
    order = sorted((s for s in speakers if s not in fixed), key=lambda s: (-speakers[s].seconds, s))
    chosen: dict[str, str] = {}
    short: dict[str, int] = {}
    for speaker in order:
        sex = speakers[speaker].sex
        names = candidates(voices, sex, default_voice)
        voice = _farthest(names, taken)
        if taken.get(voice, 0):
            short[sex] = len(names)
        taken[voice] = taken.get(voice, 0) + 1
        chosen[speaker] = voice
    warnings = []
    for sex, count in short.items():
        who = {"F": "female", "M": "male"}.get(sex, "unknown-sex")
        speakers_n = sum(1 for s in speakers if speakers[s].sex == sex)
        warnings.append(
            f"cast: {speakers_n} {who} speakers but {count} fitting voices: some speakers share a voice "
            "(give them their own with --cast or in cast.json)"
        )
    return chosen, warnings


# -- cast.json -------------------------------------------------------------------------------------------


@dataclass
class CastEntry:
    """One speaker in cast.json."""

    lines: int = 0
    seconds: float = 0.0
    f0_median_hz: float | None = None
    sex: str = UNKNOWN
    voices: dict[str, str] = field(default_factory=dict)  # TTS route -> voice
    chosen_by: dict[str, str] = field(default_factory=dict)  # TTS route -> BY_*
    name: str | None = None  # a person's name: registry match or the user's
    cloned: bool = False
    registry_match: float | None = None  # voice-print similarity to the registered person
    edited: bool = False  # the user changed `voices` or `name` (not written: recognised by auto_hash)

    def editable(self) -> dict[str, Any]:
        return {"voices": dict(sorted(self.voices.items())), "name": self.name}


def editable_hash(editable: Mapping[str, Any]) -> str:
    return content_key("cast-entry", editable)[:16]


def cast_to_json(entries: Mapping[str, CastEntry]) -> dict[str, Any]:
    """cast.json: edit a speaker's `voices` (per TTS route) or `name` and re-run; speakers themselves are
    renamed, merged or given lines in segments.json (`speaker` of each line)."""
    speakers = {}
    for speaker, entry in entries.items():
        data = {k: v for k, v in asdict(entry).items() if k != "edited" and v is not None}
        if not entry.edited:
            data["auto_hash"] = editable_hash(entry.editable())
        elif "auto_hash" in data:
            del data["auto_hash"]
        speakers[speaker] = data
    return {"version": CAST_VERSION, "speakers": speakers}


def read_cast(path: Path) -> dict[str, CastEntry]:
    """The entries of an existing cast.json ({} when there is none), each marked `edited` when its voices
    or name differ from what the job wrote. A file that cannot be read is one line."""
    if not path.is_file():
        return {}
    problem = f"{path.name} is not valid (fix it or delete it to cast again)"
    try:
        data = read_json(path)
        raw = data["speakers"]
        if not isinstance(raw, dict):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(problem) from None
    entries: dict[str, CastEntry] = {}
    for speaker, item in raw.items():
        if not isinstance(item, dict):
            raise ConfigError(f"{path.name}: speaker {speaker!r} is not an object")
        voices = item.get("voices") or {}
        name = item.get("name")
        if not isinstance(voices, dict) or not all(isinstance(v, str) and v.strip() for v in voices.values()):
            raise ConfigError(
                f"{path.name}: speaker {speaker!r}: `voices` must map a TTS route to a voice name"
            )
        if name is not None and not isinstance(name, str):
            raise ConfigError(f"{path.name}: speaker {speaker!r}: `name` must be text")
        chosen = item.get("chosen_by")
        chosen = chosen if isinstance(chosen, dict) else {}
        entry = CastEntry(
            voices={str(k): v.strip() for k, v in voices.items()},
            chosen_by={str(k): str(v) for k, v in chosen.items()},
            name=name.strip() if isinstance(name, str) and name.strip() else None,
            cloned=bool(item.get("cloned", False)),
        )
        entry.edited = bool(item.get("edited")) or editable_hash(entry.editable()) != item.get("auto_hash")
        entries[str(speaker)] = entry
    return entries


def kept_with_edits(
    entries: Mapping[str, CastEntry], previous: Mapping[str, CastEntry]
) -> dict[str, CastEntry]:
    """What cast.json gets: the job's entries, plus every speaker the user edited that the plan no longer
    has (a plan rebuilt or adopted under other speakers): an edit is never dropped from the file, and
    comes back into use when the speaker does."""
    out = dict(entries)
    for speaker, entry in previous.items():
        if speaker not in out and entry.edited:
            out[speaker] = entry
    return out


def cast_path(config: DubConfig) -> Path:
    return config.out_dir / CAST_FILE


# -- the job's cast --------------------------------------------------------------------------------------


@dataclass
class Casting:
    """The job's cast: the voice of each speaker on this job's TTS route (empty when one designed or
    cloned voice speaks every line), cast.json's entries, and warning lines."""

    voices: dict[str, str]
    entries: dict[str, CastEntry]
    warnings: list[str] = field(default_factory=list)

    def apply(self, config: DubConfig) -> DubConfig:
        """The job's config with the effective cast as its `cast` (every speaker named): what every
        JobVoices built from it (estimate, per-line tasks, device batches) resolves voices with."""
        if not self.voices:
            return config
        return config.model_copy(update={"cast": dict(self.voices)})

    def names(self) -> dict[str, str]:
        """Speaker -> the label subtitles show (`--subtitle-speakers`): the person's name, else the
        speaker as segments.json names them."""
        return {speaker: entry.name or speaker for speaker, entry in self.entries.items()}

    def report(self) -> dict[str, dict[str, Any]]:
        """report.json's `speakers` block (and the summary artifact's table): no script text."""
        return {
            speaker: {
                "lines": entry.lines,
                "seconds": entry.seconds,
                "voice": self.voices.get(speaker) or ("cloned" if entry.cloned else "designed voice"),
                "cloned": entry.cloned,
                "sex": entry.sex,
                "f0_median_hz": entry.f0_median_hz,
                "chosen_by": next(iter(entry.chosen_by.values()), ""),
                **({"name": entry.name} if entry.name else {}),
                **({"registry_match": entry.registry_match} if entry.registry_match is not None else {}),
            }
            for speaker, entry in self.entries.items()
        }


def check_cast_speakers(config: DubConfig, speakers: Sequence[str]) -> None:
    """`--cast` names only speakers of the plan (one line naming the unknown one and the known ones)."""
    unknown = [s for s in config.cast if s not in speakers]
    if unknown:
        known = ", ".join(speakers) or "none"
        raise ConfigError(
            f"--cast: no speaker {unknown[0]!r} in the plan (its speakers: {known}; see segments.json)"
        )


def decide_cast(
    config: DubConfig,
    lines: Sequence[Line],
    estimates: Mapping[str, SpeakerEstimate],
    previous: Mapping[str, CastEntry],
    matches: Mapping[str, tuple[Person, float]] | None = None,
) -> Casting:
    """The cast of a job from its plan, the speakers' estimates, the previous cast.json and the registry
    matches (speaker -> (person, similarity)), by the precedence in this module's docstring. Pure."""
    engine = tts_engine(config.tts)
    route = engine.name
    speakers = speakers_of(lines)
    check_cast_speakers(config, speakers)
    matches = matches or {}
    entries: dict[str, CastEntry] = {}
    for speaker in speakers:
        est = estimates.get(speaker) or SpeakerEstimate(speaker, 0, 0.0, None, UNKNOWN)
        before = previous.get(speaker)
        entry = CastEntry(lines=est.lines, seconds=est.seconds, f0_median_hz=est.f0_median_hz, sex=est.sex)
        if before is not None:
            entry.voices, entry.chosen_by = dict(before.voices), dict(before.chosen_by)
            entry.name, entry.edited = before.name, before.edited
        entries[speaker] = entry

    clones = config.clone_speakers  # plan speaker -> consent id; {"*": id}: one clone speaks every line
    every = CLONE_EVERY_LINE in clones
    fixed_voice = BY_CLONE if every else BY_DESIGN if config.voice_design else None
    for speaker, entry in entries.items():
        entry.cloned = every or speaker in clones
        if fixed_voice is not None or entry.cloned:  # the synthesizer's own voice: no catalogue voice
            entry.chosen_by[route] = BY_CLONE if entry.cloned else BY_DESIGN
            if not entry.edited:
                entry.voices.pop(route, None)
    if fixed_voice is not None:  # one designed or cloned voice speaks every line
        return Casting({}, entries)

    decided: dict[str, str] = {}
    for speaker, entry in entries.items():
        if entry.cloned:
            continue
        match = matches.get(speaker)
        if match is not None and not (entry.edited and entry.name):
            entry.name = match[0].name
        if match is not None:
            entry.registry_match = round(match[1], 3)
        edited_voice = entry.voices.get(route) if entry.edited else None
        if edited_voice is not None:
            try:
                edited_voice = engine.resolve_voice(config, edited_voice)
            except ConfigError as exc:
                raise ConfigError(f"{CAST_FILE}: speaker {speaker!r}: {exc}") from None
        registered = match[0].voices.get(route) if match is not None else None
        for how, voice in (
            (BY_CAST, config.cast.get(speaker)),
            (BY_EDIT, edited_voice),
            (BY_REGISTRY, registered),
            (BY_VOICE, config.voice),
        ):
            if voice:
                decided[speaker] = voice
                entry.chosen_by[route] = how
                break
    # auto-casting: the job's earlier pick when still in the catalogue, else a new one
    catalogue = list(engine.voices(config))
    offered = {v.name for v in catalogue}
    for speaker, entry in entries.items():
        earlier = entry.voices.get(route)
        if speaker not in decided and entry.chosen_by.get(route) == BY_AUTO and earlier in offered:
            decided[speaker] = earlier
    voiced = [s for s in speakers if not entries[s].cloned]
    new, warnings = auto_cast(
        {s: estimates.get(s) or SpeakerEstimate(s, 0, 0.0, None, UNKNOWN) for s in voiced},
        catalogue, decided, engine.default_voice,
    )  # fmt: skip
    for speaker, voice in new.items():
        decided[speaker] = voice
        entries[speaker].chosen_by[route] = BY_AUTO
    for speaker in voiced:
        if not entries[speaker].edited:
            entries[speaker].voices[route] = decided[speaker]
    return Casting({s: decided[s] for s in voiced}, entries, warnings)


def cached_estimates(speech: Path, lines: Sequence[Line]) -> dict[str, SpeakerEstimate]:
    """estimate_speakers, kept in `<speech>.speakers.json` under a key of the speech file (size and
    modification time: it is rewritten only when its own inputs change) and each speaker's line spans,
    so a re-run does not measure pitch again (pYIN and librosa's import: about 3 s of a re-run)."""
    if not lines:
        return estimate_speakers(ArrayReader(np.zeros(0, dtype=np.float32)), lines)
    stat = speech.stat()
    spans = [(ln.speaker, round(ln.start, 3), round(ln.end, 3)) for ln in lines]
    key = content_key(
        "speakers-v1", str(speech.resolve()), stat.st_size, stat.st_mtime_ns, spans, PITCH_SAMPLE_S
    )
    store = speech.with_name(f"{speech.stem}.speakers.json")
    if is_fresh(store, key):
        try:
            return {s: SpeakerEstimate(**e) for s, e in read_json(store).items()}
        except (OSError, ValueError, TypeError):
            pass
    with SpeechReader(speech) as samples:  # the lines' spans only (audio/speech_reader.py)
        estimates = estimate_speakers(samples, lines)
    write_json_atomic(store, {s: asdict(e) for s, e in estimates.items()})
    mark_fresh(store, key)
    return estimates


@task(name="cast", **STAGE)
def cast(config: DubConfig, lines: list[Line], speech: Path, cast_file: Path) -> Casting:
    """The job's cast (see the module docstring): measures each speaker on `speech` (the separated
    vocals, or the 16 kHz analysis copy), matches the registry, decides every speaker's voice, writes
    cast.json (the user's edits kept as written) and logs one line per speaker. Runs before the cost
    estimate: an unknown speaker or voice, or an unreadable registry, is one line and nothing is paid."""
    log = stage_logger()
    previous = read_cast(cast_file)
    check_cast_speakers(config, speakers_of(lines))
    people = None
    fixed = config.voice_design if CLONE_EVERY_LINE not in config.clone_speakers else "clone"
    if config.cast_registry is not None and fixed is None:
        from tasks.cast_registry import load_registry

        people = load_registry(config.cast_registry)
    estimates = cached_estimates(speech, lines)
    matches = None
    if people:
        from tasks.cast_registry import match_speakers, speaker_prints

        with SpeechReader(speech) as samples:
            matches = match_speakers(speaker_prints(samples, lines), people)
    casting = decide_cast(config, lines, estimates, previous, matches)
    write_json_atomic(cast_file, cast_to_json(kept_with_edits(casting.entries, previous)))
    for speaker, entry in casting.entries.items():
        log.info(
            "cast speaker=%s lines=%d seconds=%.1f f0_hz=%s sex=%s voice=%s chosen_by=%s%s",
            speaker, entry.lines, entry.seconds, entry.f0_median_hz, entry.sex,
            casting.voices.get(speaker, "(job voice)"), entry.chosen_by.get(config.tts, ""),
            f" registry={entry.name} match={entry.registry_match}" if entry.registry_match else "",
        )  # fmt: skip
    for warning in casting.warnings:
        log.warning(warning)
    return casting
