"""The cast (tasks/cast.py): speakers measured from the audio, auto-casting by sex with distinct voices,
the precedence of --cast, cast.json edits, the registry, --voice and auto-casting, cast.json kept as the
user edited it, one-voice jobs keeping their clip cache keys, and speaker labels in subtitles."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio.speech_reader import ArrayReader
from core.config import DubConfig, build_config
from core.errors import ConfigError
from models.registry import VoiceInfo
from tasks.cast import (
    BY_AUTO,
    BY_CAST,
    BY_EDIT,
    BY_REGISTRY,
    BY_VOICE,
    CastEntry,
    Casting,
    SpeakerEstimate,
    auto_cast,
    cast_to_json,
    decide_cast,
    estimate_speakers,
    read_cast,
    spread_spans,
)
from tasks.segment import Line

RATE = 16_000
MALE, FEMALE, OTHER_MALE = "en-us+m3", "en-us+f3", "en+klatt"
TEXTS = [
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
]  # fmt: skip
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def speak(voice: str, text: str) -> np.ndarray:
    import soxr

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "u.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(out), text], check=True)
        audio, rate = sf.read(str(out), dtype="float32")
    return soxr.resample(np.asarray(audio), int(rate), RATE).astype(np.float32)


def conversation(turns: list[tuple[str, str, str]]) -> tuple[np.ndarray, list[Line]]:
    """(speaker label, espeak voice, text) per line -> 16 kHz speech and its plan lines."""
    pieces, lines, t = [np.zeros(int(0.3 * RATE), dtype=np.float32)], [], 0.3
    for i, (speaker, voice, text) in enumerate(turns):
        audio = speak(voice, text)
        lines.append(Line(i, round(t, 3), round(t + audio.size / RATE, 3), text, 0.4, speaker=speaker))
        pieces += [audio, np.zeros(int(0.4 * RATE), dtype=np.float32)]
        t += audio.size / RATE + 0.4
    return np.concatenate(pieces), lines


def est(speaker: str, sex: str, seconds: float = 10.0) -> SpeakerEstimate:
    return SpeakerEstimate(speaker, 3, seconds, 120.0 if sex == "M" else 200.0, sex)


CATALOGUE = [
    VoiceInfo("Ann", "F"), VoiceInfo("Bo", "M"), VoiceInfo("Cy", "F"), VoiceInfo("Di", "M"),
    VoiceInfo("Eve", "F"), VoiceInfo("Kid", "M", "naughty kid"), VoiceInfo("Fay", "F"), VoiceInfo("Gus", "M"),
]  # fmt: skip


# -- measuring speakers ----------------------------------------------------------------------------------


@needs_espeak
def test_speakers_are_measured_with_their_pitch_and_sex() -> None:
    audio, lines = conversation(
        [("S1", MALE, TEXTS[0]), ("S2", FEMALE, TEXTS[1]), ("S1", MALE, TEXTS[2]), ("S2", FEMALE, TEXTS[3])]
    )
    speakers = estimate_speakers(ArrayReader(audio), lines)
    assert list(speakers) == ["S1", "S2"]
    s1, s2 = speakers["S1"], speakers["S2"]
    assert (s1.sex, s2.sex) == ("M", "F")
    assert s1.f0_median_hz is not None and 80 < s1.f0_median_hz < 150
    assert s2.f0_median_hz is not None and 170 < s2.f0_median_hz < 260
    assert s1.lines == 2 and s1.seconds == pytest.approx(
        sum(ln.end - ln.start for ln in lines[::2]), abs=1e-3
    )


def test_silence_gives_an_unknown_sex() -> None:
    lines = [Line(0, 0.5, 2.0, "Hello.", speaker="S1")]
    (only,) = estimate_speakers(ArrayReader(np.zeros(3 * RATE, dtype=np.float32)), lines).values()
    assert only.sex == "unknown" and only.f0_median_hz is None and only.seconds == 1.5


def test_long_speakers_are_measured_on_a_sample_spread_over_the_video() -> None:
    lines = [Line(i, 10.0 * i, 10.0 * i + 4.0, "x") for i in range(100)]  # 400 s of speech
    spans = spread_spans(lines, 30.0)
    assert sum(b - a for a, b in spans) <= 30.0 + 1e-9
    assert spans[0][0] < 100 and spans[-1][0] > 800  # from the start to the end, not the first minutes
    assert spread_spans([Line(0, 0.0, 600.0, "x")], 30.0) == [(0.0, 30.0)]


# -- auto-casting ----------------------------------------------------------------------------------------


def test_auto_cast_gives_distinct_voices_of_the_speakers_sex_spread_over_the_catalogue() -> None:
    speakers = {"S1": est("S1", "F", 30), "S2": est("S2", "M", 20), "S3": est("S3", "F", 10)}
    cast, warnings = auto_cast(speakers, CATALOGUE, {}, default_voice="Cy")
    assert cast == {"S1": "Cy", "S2": "Bo", "S3": "Fay"}  # default first; the next F is the farthest
    assert warnings == []
    assert auto_cast(speakers, CATALOGUE, {}, default_voice="Cy") == (cast, [])  # deterministic


def test_auto_cast_keeps_clear_of_fixed_voices_and_avoids_child_voices() -> None:
    speakers = {f"S{i}": est(f"S{i}", "M", 10 - i) for i in range(1, 4)}
    cast, warnings = auto_cast(speakers, CATALOGUE, {"S9": "Bo"})
    assert cast == {"S1": "Gus", "S2": "Di", "S3": "Bo"}  # farthest from Bo first; a child's voice never
    assert "3 male speakers but 3 fitting voices" in warnings[0]  # S9 holds one of them


def test_more_speakers_than_voices_of_their_sex_reuse_voices_with_a_warning() -> None:
    speakers = {f"S{i}": est(f"S{i}", "F", 10 - i) for i in range(1, 7)}
    cast, warnings = auto_cast(speakers, CATALOGUE, {})
    assert len(set(cast.values())) == 4 and set(cast.values()) == {"Ann", "Cy", "Eve", "Fay"}
    assert len(warnings) == 1 and "6 female speakers but 4 fitting voices" in warnings[0]


def test_unknown_sex_casts_from_either_sex_default_first() -> None:
    cast, _ = auto_cast({"S1": SpeakerEstimate("S1", 1, 1.0, None, "unknown")}, CATALOGUE, {}, "Gus")
    assert cast == {"S1": "Gus"}


# -- the job's cast: precedence and cast.json ------------------------------------------------------------


def plan(*speakers: str) -> list[Line]:
    return [Line(i, 2.0 * i, 2.0 * i + 1.5, f"Line {i}.", 0.5, speaker=s) for i, s in enumerate(speakers)]


def config(tmp_path: Path, **values: object) -> DubConfig:
    return build_config(video=Path("v.mp4"), langs="ja", cache_dir=tmp_path / "cache", **values)


def test_voice_not_given_means_cast_automatically(tmp_path: Path) -> None:
    cfg = build_config(video=Path("v.mp4"), langs="ja")
    assert cfg.voice is None
    lines = plan("S1", "S2", "S3")
    casting = decide_cast(
        cfg, lines, {"S1": est("S1", "F"), "S2": est("S2", "M"), "S3": est("S3", "F", 5)}, {}
    )
    assert casting.voices["S1"] == "Cherry" and casting.voices["S2"] == "Ethan"  # the catalogue's first
    assert casting.voices["S3"] not in ("Cherry", "Ethan")
    assert {e.chosen_by["api"] for e in casting.entries.values()} == {BY_AUTO}
    local = decide_cast(build_config(video=Path("v.mp4"), langs="ja", tts="local"), lines[:1], {}, {})
    assert local.voices == {"S1": "Vivian"}  # no speech measured: the engine's default voice


def test_precedence_cast_then_edits_then_registry_then_voice_then_auto(tmp_path: Path) -> None:
    from tasks.cast_registry import Person

    lines = plan("S1", "S2", "S3", "S4", "S5")
    estimates = {s: est(s, "M") for s in ("S1", "S2", "S3", "S4", "S5")}
    previous = {
        "S1": CastEntry(voices={"api": "Kai"}, edited=True),  # overridden by --cast
        "S2": CastEntry(voices={"api": "serena"}, edited=True),  # the user's edit
        "S3": CastEntry(voices={"api": "Moon"}, chosen_by={"api": BY_AUTO}),  # the job's own earlier pick
    }
    vec = np.ones(256, dtype=np.float32) / 16
    person = Person("Alice", {"api": "Maia"}, vec, "m")
    matches = {"S2": (person, 0.99), "S4": (person, 0.97)}
    cfg = config(tmp_path, cast="S1=Ethan", voice="Ryan")
    casting = decide_cast(cfg, lines, estimates, previous, matches)
    assert casting.voices == {"S1": "Ethan", "S2": "Serena", "S3": "Ryan", "S4": "Maia", "S5": "Ryan"}
    chosen = {s: e.chosen_by["api"] for s, e in casting.entries.items()}
    assert chosen == {"S1": BY_CAST, "S2": BY_EDIT, "S3": BY_VOICE, "S4": BY_REGISTRY, "S5": BY_VOICE}
    assert casting.entries["S4"].name == "Alice" and casting.entries["S4"].registry_match == 0.97
    # without --voice the job's earlier auto pick stays (a moved line does not re-cast everyone)
    again = decide_cast(config(tmp_path), lines, estimates, previous)
    assert again.voices["S3"] == "Moon" and again.entries["S3"].chosen_by["api"] == BY_AUTO
    assert len(set(again.voices.values())) == 5


def test_cast_json_keeps_what_the_user_wrote(tmp_path: Path) -> None:
    path = tmp_path / "cast.json"
    lines = plan("S1", "S2", "S1")
    estimates = {"S1": est("S1", "F"), "S2": est("S2", "M")}
    first = decide_cast(config(tmp_path), lines, estimates, read_cast(path))
    path.write_text(json.dumps(cast_to_json(first.entries)))
    assert not any(e.edited for e in read_cast(path).values())
    data = json.loads(path.read_text())
    data["speakers"]["S2"]["voices"]["api"] = "Kai"  # the user re-voices S2 ...
    data["speakers"]["S1"]["name"] = "Narrator"  # ... and names S1
    path.write_text(json.dumps(data))
    previous = read_cast(path)
    assert previous["S2"].edited and previous["S1"].edited
    second = decide_cast(config(tmp_path), lines, estimates, previous)
    assert second.voices == {"S1": first.voices["S1"], "S2": "Kai"}
    assert second.names() == {"S1": "Narrator", "S2": "S2"}
    path.write_text(json.dumps(cast_to_json(second.entries)))
    kept = json.loads(path.read_text())["speakers"]
    assert kept["S2"]["voices"]["api"] == "Kai" and "auto_hash" not in kept["S2"]  # still the user's
    assert read_cast(path)["S2"].edited
    # a re-run on another engine adds that engine's voice and keeps the user's api voice
    local = decide_cast(config(tmp_path, tts="local"), lines, estimates, read_cast(path))
    assert local.entries["S2"].voices["api"] == "Kai"


def test_bad_cast_input_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--cast: no speaker 'S9' in the plan"):
        decide_cast(config(tmp_path, cast="S9=Ethan"), plan("S1", "S2"), {}, {})
    with pytest.raises(ConfigError, match="unknown voice 'Nobody'"):
        config(tmp_path, cast="S1=Nobody")
    bad = tmp_path / "cast.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="cast.json is not valid"):
        read_cast(bad)
    bad.write_text(json.dumps({"speakers": {"S1": {"voices": {"api": "Nobody"}}}}))
    with pytest.raises(ConfigError, match="cast.json: speaker 'S1': unknown voice 'Nobody'"):
        decide_cast(config(tmp_path), plan("S1"), {}, read_cast(bad))
    with pytest.raises(ConfigError, match="--cast-registry .*: not a folder"):
        config(tmp_path, cast_registry=tmp_path / "missing")


def test_cast_from_a_file(tmp_path: Path) -> None:
    simple = tmp_path / "voices.json"
    simple.write_text(json.dumps({"S1": "ethan", "S2": "Cherry"}))
    assert config(tmp_path, cast=str(simple)).cast == {"S1": "Ethan", "S2": "Cherry"}
    other_job = tmp_path / "cast.json"
    entries = {
        "S1": CastEntry(voices={"api": "Kai", "local": "Ryan"}),
        "S2": CastEntry(voices={"api": "Maia"}),
    }
    other_job.write_text(json.dumps(cast_to_json(entries)))
    assert config(tmp_path, cast=str(other_job)).cast == {"S1": "Kai", "S2": "Maia"}
    assert config(tmp_path, cast=str(other_job), tts="local").cast == {"S1": "Ryan"}
    with pytest.raises(ConfigError, match="--cast: no file"):
        config(tmp_path, cast=str(tmp_path / "nope.json"))


def test_one_voice_jobs_keep_their_clip_cache_keys(tmp_path: Path) -> None:
    """--voice X on a one-speaker job: the effective cast is S1 -> X, and the keys are the pinned ones."""
    from tasks.synthesize import JobVoices, make_synthesizer
    from tests.test_voices import PINNED_CLIP_KEYS, TEXT

    for (tts, voice), key in PINNED_CLIP_KEYS.items():
        cfg = config(tmp_path, tts=tts, voice=voice)
        casting = decide_cast(cfg, plan("S1", "S1"), {"S1": est("S1", "M")}, {})
        job = casting.apply(cfg)
        voices = JobVoices(job, make_synthesizer(job, require_key=False))
        assert voices.key_for(plan("S1")[0], "ja", TEXT) == key
    # auto-cast to the engine's default voice (a female speaker on the api): the default voice's keys
    cfg = config(tmp_path)
    job = decide_cast(cfg, plan("S1"), {"S1": est("S1", "F")}, {}).apply(cfg)
    voices = JobVoices(job, make_synthesizer(job, require_key=False))
    assert voices.key_for(plan("S1")[0], "ja", TEXT) == PINNED_CLIP_KEYS[("api", "Cherry")]


def test_a_designed_voice_job_casts_nothing(tmp_path: Path) -> None:
    cfg = config(tmp_path, tts="local", voice_design="a calm low voice")
    casting = decide_cast(cfg, plan("S1", "S2"), {}, {})
    assert casting.voices == {} and casting.apply(cfg) is cfg
    assert casting.report()["S1"]["voice"] == "designed voice"


# -- the cast task and the registry: the same voice across two videos ------------------------------------


def run_cast(cfg: DubConfig, audio: np.ndarray, lines: list[Line], folder: Path) -> Casting:
    from tasks.cast import cast

    folder.mkdir(parents=True, exist_ok=True)
    speech = folder / "work" / "analysis.wav"
    speech.parent.mkdir(exist_ok=True)
    sf.write(str(speech), audio, RATE)
    (folder / "segments.json").write_text(
        json.dumps({"source_language": "en", "lines": [ln.__dict__ for ln in lines]})
    )
    return cast.fn(cfg, lines, speech, folder / "cast.json")


@needs_espeak
def test_two_videos_of_the_same_voice_get_the_same_cast_voice_through_the_registry(tmp_path: Path) -> None:
    from flows.cast import main as cast_cli

    registry = tmp_path / "registry"
    # video 1: the host (a male voice) is cast Kai by hand; registered after the job
    audio1, lines1 = conversation([("S1", MALE, t) for t in TEXTS[:7]])
    first = run_cast(config(tmp_path, cast="S1=Kai"), audio1, lines1, tmp_path / "job1")
    assert first.voices == {"S1": "Kai"}
    assert cast_cli(["add", str(tmp_path / "job1"), "S1", "--name", "Host", "--registry", str(registry)]) == 0
    # video 2: other words; a guest (female) speaks first, the host is S2 now
    turns = [("S1", FEMALE, TEXTS[7]), *[("S2", MALE, t) for t in TEXTS[8:11]], ("S1", FEMALE, TEXTS[11])]
    turns += [
        ("S2", MALE, TEXTS[12]),
        ("S2", MALE, TEXTS[13]),
        ("S2", MALE, TEXTS[14]),
        ("S1", FEMALE, TEXTS[15]),
    ]
    turns += [("S3", OTHER_MALE, t) for t in TEXTS[16:20]]
    audio2, lines2 = conversation(turns)
    cfg = config(tmp_path, cast_registry=registry)
    second = run_cast(cfg, audio2, lines2, tmp_path / "job2")
    assert second.voices["S2"] == "Kai"  # the registered host's voice, not what auto-casting would give
    entry = second.entries["S2"]
    assert entry.chosen_by["api"] == BY_REGISTRY and entry.name == "Host"
    assert second.entries["S1"].chosen_by["api"] == BY_AUTO and second.entries["S1"].sex == "F"
    assert second.entries["S3"].chosen_by["api"] == BY_AUTO  # another male voice is not the host
    assert second.voices["S3"] != "Kai"
    written = json.loads((tmp_path / "job2" / "cast.json").read_text())["speakers"]
    assert written["S2"]["name"] == "Host" and written["S2"]["voices"] == {"api": "Kai"}
    assert written["S1"]["sex"] == "F" and written["S1"]["f0_median_hz"] > 170


def test_the_registry_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from flows.cast import main as cast_cli
    from models.speaker_embedding import EMBEDDING_MODEL
    from tasks.cast_registry import Person, add_person, load_registry

    registry = tmp_path / "registry"
    vec = np.ones(256, dtype=np.float32) / 16
    add_person(registry, Person("Ann Lee", {"api": "Maia"}, vec, EMBEDDING_MODEL, 12.0))
    assert cast_cli(["list", "--registry", str(registry)]) == 0
    assert "Ann Lee" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="already in the cast registry"):
        add_person(registry, Person("ann lee", {"api": "Kai"}, vec, EMBEDDING_MODEL))
    with pytest.raises(ConfigError, match="cannot join a registry"):
        add_person(registry, Person("Bo", {}, vec, "another-encoder"))
    assert cast_cli(["remove", "Nobody", "--registry", str(registry)]) == 2
    assert "error: no 'Nobody' in the cast registry" in capsys.readouterr().err
    assert cast_cli(["remove", "ANN LEE", "--registry", str(registry)]) == 0
    assert load_registry(registry) == []
    assert cast_cli(["add", str(tmp_path / "nojob"), "S1", "--name", "X", "--registry", str(registry)]) == 2
    assert "no segments.json" in capsys.readouterr().err


def test_an_unreadable_registry_is_one_line(tmp_path: Path) -> None:
    from tasks.cast_registry import load_registry

    registry = tmp_path / "registry"
    registry.mkdir()
    (registry / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match=r"bad.json cannot be read \(not valid JSON\)"):
        load_registry(registry)
    (registry / "bad.json").write_text(
        json.dumps({"name": "Old", "embedding_model": "x", "print": [0.1] * 256})
    )
    with pytest.raises(ConfigError, match="holds a voice print of 'x'"):
        load_registry(registry)


def test_registry_matches_pair_each_person_with_one_speaker() -> None:
    from tasks.cast_registry import Person, match_speakers

    a, b = np.zeros(256, dtype=np.float32), np.zeros(256, dtype=np.float32)
    a[0], b[1] = 1.0, 1.0
    near_a = a + 0.1 * b
    near_a /= np.linalg.norm(near_a)
    alice = Person("Alice", {"api": "Maia"}, a, "m")
    matched = match_speakers({"S1": near_a, "S2": a, "S3": b}, [alice], threshold=0.9)
    assert list(matched) == ["S2"] and matched["S2"][1] == pytest.approx(1.0)


# -- outputs ---------------------------------------------------------------------------------------------


def test_speakers_in_the_report_and_the_summary(tmp_path: Path) -> None:
    from tasks.report import summary_markdown

    casting = decide_cast(config(tmp_path, voice="Ethan"), plan("S1", "S2", "S1"), {}, {})
    block = casting.report()
    assert block["S1"] == {
        "lines": 0, "seconds": 0.0, "voice": "Ethan", "cloned": False, "sex": "unknown", "f0_median_hz": None,
        "chosen_by": BY_VOICE,
    }  # fmt: skip
    report = {
        "job": {"video": "v.mp4"}, "outputs": {"video": "v.dubbed.mkv"}, "tracks": {}, "stage_seconds": {},
        "cost": {"billed_characters": 0, "amount": 0, "currency": "USD"}, "ai_disclosure": "AI.",
        "speakers": {**block, "S2": {**block["S2"], "name": "Guest", "cloned": True, "voice": "cloned"}},
    }  # fmt: skip
    text = summary_markdown(report)
    assert "| speaker | lines | seconds | voice | cloned | chosen by |" in text
    assert "| S2 (Guest) | 0 | 0.0 | cloned | yes | --voice |" in text


def test_subtitles_label_their_speakers(tmp_path: Path) -> None:
    import webvtt

    from text.subtitles import cues_for_track, vtt_cue_text, write_srt, write_vtt

    timings = [(0.5, 2.0, "Good morning."), (2.5, 4.0, "Still me."), (4.5, 6.0, "Hello <you> & all.")]
    cues = cues_for_track(timings, 10.0, ["Host", "Host", "Guest"])
    write_srt(cues, tmp_path / "a.srt")
    srt_text = (tmp_path / "a.srt").read_text()
    assert (
        "Host: Good morning." in srt_text and "\nStill me." in srt_text and "Guest: Hello <you>" in srt_text
    )
    write_vtt(cues, tmp_path / "a.vtt", "en")
    vtt = (tmp_path / "a.vtt").read_text()
    assert "<v Host>Good morning." in vtt and "<v Guest>Hello &lt;you&gt; &amp; all." in vtt
    read = [vtt_cue_text(c) for c in webvtt.read(str(tmp_path / "a.vtt")).captions]
    assert read == ["Good morning.", "Still me.", "Hello <you> & all."]
    plain = cues_for_track(timings, 10.0)
    assert [c.speaker for c in plain] == [None, None, None] and plain[0].text == "Good morning."


def test_a_rerun_does_not_measure_the_speakers_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pitch estimation (pYIN, and librosa's import) was 3 s of a 4 s re-run: its result is kept under a
    key of the speech file and the speakers' spans, and measured again only when either changes."""
    import tasks.cast as cast_stage

    audio, lines = conversation(
        [("S1", "en+f3", "Hello there, how are you today?"), ("S2", "en-us+m3", "Fine.")]
    )
    speech = tmp_path / "vocals.wav"
    sf.write(speech, audio, RATE)
    first = cast_stage.cached_estimates(speech, lines)

    def no_measuring(*args: object) -> None:
        raise AssertionError("measured again")

    with monkeypatch.context() as patched:
        patched.setattr(cast_stage, "estimate_speakers", no_measuring)
        assert cast_stage.cached_estimates(speech, lines) == first
    lines[1].speaker = "S1"  # the plan changed: measured again
    assert set(cast_stage.cached_estimates(speech, lines)) == {"S1"}
