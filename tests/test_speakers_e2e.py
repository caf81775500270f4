"""Speakers end to end: a two-person conversation (espeak-ng voices) through the real flow (tiny.en
Whisper, the offline diarizer, loopback DashScope), measured from the dubbed tracks, not the plan."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.loopback_dashscope import LoopbackDashScope
from tests.mediacheck import decode_audio_stream
from tests.speakers_audio import Conversation, build_conversation

pytestmark = pytest.mark.e2e
RATE = 48_000
FEMALE, MALE = "en+f3", "en-us+m3"
SCRIPT = [
    (FEMALE, "Welcome back to the show, it is good to see you again."),
    (MALE, "Thank you, I am very happy to be here today."),
    (FEMALE, "Tell us about the boat you built last summer."),
    (MALE, "It took four months of steady work in the old barn."),
    (FEMALE, "Was it hard to find the right kind of wood?"),
    (MALE, "Yes, the oak came from a farm far to the north."),
    (FEMALE, "And did it float on the first day you tried it?"),
    (MALE, "It did, and we sailed it to the island and back."),
]
PAUSES = [0.8, 1.4, 0.6, 2.0, 0.9, 1.2, 0.7, 1.0]


def make_video(conversation: Conversation, out: Path) -> Path:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=navy:s=160x90:r=10",
         "-i", str(conversation.path), "-shortest", "-c:v", "libx264", "-preset", "ultrafast",
         "-pix_fmt", "yuv420p", "-c:a", "aac", "-ar", "48000", "-ac", "2", str(out)],
        check=True,
    )  # fmt: skip
    return out


def median_f0(audio: np.ndarray) -> float:
    import librosa

    f0, voiced, _ = librosa.pyin(audio, fmin=100, fmax=300, sr=RATE, frame_length=2048)
    return float(np.nanmedian(f0[voiced])) if np.any(voiced) else float("nan")


def true_speaker(conversation: Conversation, start: float, end: float) -> str:
    overlap: dict[str, float] = {}
    for u in conversation.utterances:  # summed per speaker: each speaks several utterances
        overlap[u.speaker] = overlap.get(u.speaker, 0.0) + max(0.0, min(end, u.end) - max(start, u.start))
    return max(overlap, key=lambda speaker: overlap[speaker])


def test_each_speaker_is_dubbed_in_a_voice_of_their_own(
    prefect_harness, tiny_en_model: Path, tmp_path: Path, dashscope_server: LoopbackDashScope
) -> None:
    from core.config import build_config
    from flows.dub import dub

    conversation = build_conversation(SCRIPT, PAUSES, tmp_path / "talk.wav")
    video = make_video(conversation, tmp_path / "talk.mp4")
    # two voices far apart in the loopback service's pitch (it speaks each voice at its own f0: Chelsie
    # about 153 Hz, Momo about 200 Hz), so the dubbed tracks say who speaks without reading the plan
    config = build_config(
        video=video, langs="de,ja", out=tmp_path / "out", cache_dir=tmp_path / "cache", separator="none",
        asr_model=str(tiny_en_model), cast="S1=Chelsie,S2=Momo", source_lang="en", retry_base_delay_s=0.01,
    )  # fmt: skip
    result = dub(config)
    assert result.video is not None

    plan = json.loads((tmp_path / "out" / "segments.json").read_text())["lines"]
    speakers = {line["speaker"] for line in plan}
    assert speakers == {"S1", "S2"}, speakers  # counted from the audio, no hint given
    first = true_speaker(conversation, plan[0]["start"], plan[0]["end"])
    expected_voice = {first: "Chelsie", ({FEMALE, MALE} - {first}).pop(): "Momo"}

    report = json.loads((tmp_path / "out" / "report.json").read_text())
    voice_f0 = {"Chelsie": 153.0, "Momo": 200.0}
    right = total = 0
    for n, code in enumerate(["de", "ja"]):
        track = decode_audio_stream(result.video, 1 + n, RATE)
        for timing, line in zip(report["tracks"][code]["lines_timing"], plan, strict=True):
            start, placed = timing["start"], timing["placed_s"]
            f0 = median_f0(track[int(start * RATE) : int((start + placed) * RATE)])
            heard = min(voice_f0, key=lambda v: abs(voice_f0[v] - f0))
            right += heard == expected_voice[true_speaker(conversation, line["start"], line["end"])]
            total += 1
    assert total >= 2 * len(SCRIPT) and right / total >= 0.95, (right, total)

    cast = json.loads((tmp_path / "out" / "cast.json").read_text())["speakers"]
    assert set(cast) == {"S1", "S2"}
    assert report["speakers"]["S1"]["voice"] == "Chelsie" and report["speakers"]["S2"]["voice"] == "Momo"


def test_without_a_cast_each_speaker_gets_a_different_voice_of_their_sex(
    prefect_harness, tiny_en_model: Path, tmp_path: Path, dashscope_server: LoopbackDashScope
) -> None:
    from core.config import build_config
    from flows.dub import dub
    from models.voices import VOICES_BY_NAME

    conversation = build_conversation(SCRIPT[:4], PAUSES[:4], tmp_path / "talk.wav")
    video = make_video(conversation, tmp_path / "talk.mp4")
    config = build_config(
        video=video, langs="de", out=tmp_path / "out", cache_dir=tmp_path / "cache", separator="none",
        asr_model=str(tiny_en_model), source_lang="en", retry_base_delay_s=0.01,
    )  # fmt: skip
    dub(config)
    plan = json.loads((tmp_path / "out" / "segments.json").read_text())["lines"]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    voices = {speaker: block["voice"] for speaker, block in report["speakers"].items()}
    assert len(voices) == 2 and len(set(voices.values())) == 2, voices
    for line in plan:
        truth = true_speaker(conversation, line["start"], line["end"])
        assert VOICES_BY_NAME[voices[line["speaker"]]].sex == ("F" if truth == FEMALE else "M"), line
    sent = {r.body["input"]["voice"] for r in dashscope_server.requests_of("tts")}
    assert sent == set(voices.values())


def test_a_series_keeps_its_voices_through_the_cast_registry(
    prefect_harness, tiny_en_model: Path, tmp_path: Path, dashscope_server: LoopbackDashScope
) -> None:
    """Episode 1's host is cast by hand and registered from the finished job; episode 2 (other words,
    no --cast) gives the same voice to the speaker whose voice print matches."""
    from core.config import build_config
    from flows.cast import main as cast_cli
    from flows.dub import dub
    from tests.speakers_audio import SENTENCES

    registry = tmp_path / "registry"
    for episode, texts in ((1, SENTENCES[:7]), (2, SENTENCES[7:14])):
        conversation = build_conversation(
            [(MALE, t) for t in texts], [0.8] * len(texts), tmp_path / f"e{episode}.wav"
        )
        video = make_video(conversation, tmp_path / f"episode{episode}.mp4")
        options: dict[str, object] = {"cast": "S1=Kai"} if episode == 1 else {"cast_registry": registry}
        config = build_config(
            video=video, langs="de", out=tmp_path / f"out{episode}", cache_dir=tmp_path / "cache",
            separator="none", asr_model=str(tiny_en_model), source_lang="en", retry_base_delay_s=0.01,
            **options,
        )  # fmt: skip
        dub(config)
        if episode == 1:
            assert (
                cast_cli(["add", str(tmp_path / "out1"), "S1", "--name", "Host", "--registry", str(registry)])
                == 0
            )
    report = json.loads((tmp_path / "out2" / "report.json").read_text())
    assert report["speakers"]["S1"]["voice"] == "Kai", report["speakers"]
    sent = {r.body["input"]["voice"] for r in dashscope_server.requests_of("tts")}
    assert sent == {"Kai"}


def test_a_plan_made_before_speakers_were_found_is_never_rebuilt_under_the_user(
    prefect_harness, tiny_en_model: Path, tmp_path: Path, dashscope_server: LoopbackDashScope
) -> None:
    """A segments.json from a run without diarization (an earlier version, or --diarizer none), edited by
    the user: a later run that finds two speakers keeps the user's plan as written."""
    from core.config import build_config
    from flows.dub import dub

    conversation = build_conversation(SCRIPT[:4], PAUSES[:4], tmp_path / "talk.wav")
    video = make_video(conversation, tmp_path / "talk.mp4")
    options = dict(
        video=video, langs="de", out=tmp_path / "out", cache_dir=tmp_path / "cache", separator="none",
        asr_model=str(tiny_en_model), source_lang="en", retry_base_delay_s=0.01,
    )  # fmt: skip
    dub(build_config(**options, diarizer="none"))
    plan_file = tmp_path / "out" / "segments.json"
    plan = json.loads(plan_file.read_text())
    plan["lines"][0]["text"] = "Welcome back, dear listeners."  # the user's edit
    plan_file.write_text(json.dumps(plan, indent=2))
    written = plan_file.read_bytes()
    dub(build_config(**options))  # the default diarizer finds two speakers now
    assert plan_file.read_bytes() == written
    german = json.loads((tmp_path / "out" / "lines.de.json").read_text())["lines"]
    assert german[0]["source"] == "Welcome back, dear listeners."  # the job dubbed the user's plan
