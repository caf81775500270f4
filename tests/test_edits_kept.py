"""Edits are never lost: a segments.json or lines.<lang>.json the user edited survives every change
upstream; the new plan is written beside it (*.proposed.json) and --adopt-proposal takes it.

The segment stage runs for real (the bundled tiny.en Whisper on the sample's speech, the real transcribe
and segment functions); each upstream change reaches it the way it does in a job: through the key of the
transcript (the ASR model, `auto`'s resolution, the source language, the separator and the demucs version
all feed it) or of the speaker turns (diarization options)."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.edits import edited_by_user, proposal_path, replaced_path
from models.base import Transcript
from models.diarization import Turn
from tasks.segment import load_plan, segment
from tasks.transcribe import transcribe

ANALYSIS_RATE = 16_000


@pytest.fixture(scope="module")
def speech(sample_video: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("speech") / "analysis.wav"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(sample_video), "-ac", "1",
         "-ar", str(ANALYSIS_RATE), str(out)],
        check=True,
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def other_model(tiny_en_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same weights under another directory: to the job, another --asr-model."""
    copy = tmp_path_factory.mktemp("models") / "tiny-copy"
    shutil.copytree(tiny_en_model, copy)
    return copy


@pytest.fixture
def setup(
    speech: Path,
    tiny_en_model: Path,
    other_model: Path,
    demucs_repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Setup:
    return Setup(speech, tiny_en_model, other_model, demucs_repo, tmp_path, monkeypatch)


@dataclass
class Inputs:
    """What the segment stage is given: the transcript, its key, and the speaker turns."""

    transcript: Transcript
    key: str
    turns: list[Turn] | None = None
    turns_key: str = ""


def two_speakers(transcript: Transcript) -> list[Turn]:
    """Turns that hand the second half of the speech to another speaker (the diarizer's output shape)."""
    mid = transcript.duration / 2
    return [Turn(0.0, mid, "S1"), Turn(mid, transcript.duration, "S2")]


@pytest.fixture(scope="module")
def demucs_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_demucs import build_tiny_repo

    return build_tiny_repo(tmp_path_factory.mktemp("demucs"))


@dataclass
class Setup:
    speech: Path
    model: Path  # tiny.en
    other: Path  # the same weights elsewhere: another --asr-model
    demucs_repo: Path
    work: Path
    mp: pytest.MonkeyPatch


def demucs_key(setup: Setup, audio_key: str, version: str) -> str:
    """The stems' key of a demucs separation as the separate stage computes it, with demucs at `version`."""
    import importlib.metadata

    from models.demucs_separator import DemucsSeparator
    from tasks.separate import separation_key
    from tests.tiny_demucs import TINY_NAME

    real = importlib.metadata.version
    setup.mp.setattr(importlib.metadata, "version", lambda name: version if name == "demucs" else real(name))
    return separation_key(audio_key, DemucsSeparator(model=TINY_NAME, model_dir=setup.demucs_repo))


def run_transcribe(s: Setup, vocals_key: str, model: Path | str, lang: str | None, run: str) -> Inputs:
    transcript, key = transcribe.fn(s.speech, vocals_key, str(model), lang, s.work / run / "transcript.json")
    return Inputs(transcript, key)


Change = Callable[[Setup], tuple[Inputs, Inputs]]


def asr_model(s: Setup) -> tuple[Inputs, Inputs]:
    return run_transcribe(s, "audio", s.model, "en", "a"), run_transcribe(s, "audio", s.other, "en", "b")


def auto_resolves_elsewhere(s: Setup) -> tuple[Inputs, Inputs]:
    """`--asr-model auto` picks by machine (small on CPU, large-v3 on a GPU): the same job on another
    machine, or after the default moved, gets another model."""
    import models.whisper_asr as asr

    s.mp.setattr(asr, "CPU_DEFAULT_MODEL", str(s.model))
    before = run_transcribe(s, "audio", "auto", "en", "a")
    s.mp.setattr(asr, "CPU_DEFAULT_MODEL", str(s.other))
    return before, run_transcribe(s, "audio", "auto", "en", "b")


def source_lang(s: Setup) -> tuple[Inputs, Inputs]:
    return run_transcribe(s, "audio", s.model, None, "a"), run_transcribe(s, "audio", s.model, "en", "b")


def separator(s: Setup) -> tuple[Inputs, Inputs]:
    """--separator none transcribes the audio itself (its key is the audio's); demucs, the vocals."""
    vocals = demucs_key(s, "audio", "4.1.0")
    return run_transcribe(s, "audio", s.model, "en", "a"), run_transcribe(s, vocals, s.model, "en", "b")


def demucs_version(s: Setup) -> tuple[Inputs, Inputs]:
    before = run_transcribe(s, demucs_key(s, "audio", "4.1.0"), s.model, "en", "a")
    return before, run_transcribe(s, demucs_key(s, "audio", "4.2.0"), s.model, "en", "b")


def diarization_options(s: Setup) -> tuple[Inputs, Inputs]:
    """Other diarization options (--speakers, --diarizer) give other speaker turns, under another key."""
    base = run_transcribe(s, "audio", s.model, "en", "a")
    turns = two_speakers(base.transcript)
    return (
        Inputs(base.transcript, base.key, turns, "diarize-options-1"),
        Inputs(base.transcript, base.key, turns, "diarize-options-2"),
    )


CHANGES = [asr_model, auto_resolves_elsewhere, source_lang, separator, demucs_version, diarization_options]


def run_segment(inputs: Inputs, speech: Path, plan: Path, adopt: bool = False) -> list:
    _, lines, _ = segment.fn(
        inputs.transcript, inputs.key, speech, plan, inputs.turns, inputs.turns_key, adopt
    )
    return lines


def edit(plan: Path) -> bytes:
    data = json.loads(plan.read_text())
    data["lines"][0]["text"] = "Words the user wrote."
    data["lines"][-1]["end"] = round(data["lines"][-1]["end"] - 0.1, 3)
    plan.write_text(json.dumps(data, indent=4))
    return plan.read_bytes()


@pytest.mark.parametrize("change", CHANGES, ids=lambda c: c.__name__)
def test_an_edited_plan_survives_an_upstream_change_and_the_new_plan_is_proposed(
    change: Change, setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    speech = setup.speech
    before, after = change(setup)
    assert (before.key, before.turns_key) != (after.key, after.turns_key)  # the change reaches the stage
    plan = setup.work / "job" / "segments.json"
    run_segment(before, speech, plan)
    assert not edited_by_user(plan)
    users = edit(plan)

    with caplog.at_level(logging.WARNING, logger="qwen_dub"):
        lines = run_segment(after, speech, plan)
    assert plan.read_bytes() == users  # never overwritten
    assert lines[0].text == "Words the user wrote."  # and the job goes on with the user's plan
    proposal = proposal_path(plan)
    assert proposal.is_file()
    assert load_plan(proposal)[1][0].text != "Words the user wrote."
    kept = [r.getMessage() for r in caplog.records if "segment plan kept" in r.getMessage()]
    assert len(kept) == 1 and "segments.proposed.json" in kept[0] and "--adopt-proposal" in kept[0]
    assert "\n" not in kept[0]

    run_segment(after, speech, plan)  # again: still the user's, the proposal made once
    assert plan.read_bytes() == users

    proposed = json.loads(proposal.read_text())
    lines = run_segment(after, speech, plan, adopt=True)
    assert json.loads(plan.read_text()) == proposed
    assert [ln.text for ln in lines] == [ln["text"] for ln in proposed["lines"]]
    assert replaced_path(plan).read_bytes() == users  # the user's version is kept beside it
    assert not proposal.exists()
    assert not edited_by_user(plan)  # adopted: the job's own plan again, rebuilt when inputs change


def test_a_plan_nobody_edited_follows_upstream(
    setup: Setup,
) -> None:
    speech, tmp_path = setup.speech, setup.work
    before, after = diarization_options(setup)
    plan = tmp_path / "job" / "segments.json"
    one = Inputs(before.transcript, before.key)
    run_segment(one, speech, plan)
    json.loads(plan.read_text())  # re-saving it in another layout is not an edit
    plan.write_text(json.dumps(json.loads(plan.read_text()), indent=1))
    lines = run_segment(after, speech, plan)
    assert {ln.speaker for ln in lines} == {"S1", "S2"}  # rebuilt with the speakers
    assert not proposal_path(plan).exists()


def test_a_plan_whose_lines_the_users_translations_belong_to_is_kept(
    setup: Setup,
) -> None:
    """lines.de.json holds a translation the user wrote for line 0: the plan it belongs to is kept."""
    from core.languages import get_language
    from tasks.translate import lines_to_json, translated_line

    speech, tmp_path = setup.speech, setup.work
    _, after = diarization_options(setup)  # two speakers now: a new plan
    before = Inputs(after.transcript, after.key)
    plan = tmp_path / "job" / "segments.json"
    lines = run_segment(before, speech, plan)
    german = lines_to_json(
        get_language("de"), "en", [translated_line(ln, f"Zeile {ln.index}.") for ln in lines]
    )
    german["lines"][0]["text"] = "Vom Nutzer übersetzt."
    (plan.parent / "lines.de.json").write_text(json.dumps(german))
    untouched = plan.read_bytes()
    run_segment(after, speech, plan)
    assert plan.read_bytes() == untouched
    assert proposal_path(plan).is_file()


# -- lines.<lang>.json -------------------------------------------------------------------------------------


def plan_lines(*texts: str) -> list:
    from tasks.segment import Line, set_pauses

    lines = [Line(i, 1.0 + 3 * i, 3.0 + 3 * i, text) for i, text in enumerate(texts)]
    set_pauses(lines, 3.0 * len(texts) + 2)
    return lines


def test_translations_the_user_wrote_for_lines_the_plan_lost_are_kept(
    sample_video: Path, tmp_path: Path, dashscope_server, caplog: pytest.LogCaptureFixture
) -> None:
    """The plan changed under lines.de.json (the user edited a line's source text, imported another plan
    or adopted a proposal): the user's German file is never overwritten and the language is dubbed from
    it; the new translation is proposed beside it, and --adopt-proposal takes it."""
    from core.config import build_config
    from tasks.translate import translate

    options = dict(video=sample_video, langs="de", source_lang="en", out=tmp_path, cache_dir=tmp_path / "c")
    config = build_config(**options)
    out = tmp_path / "lines.de.json"
    translate.fn(
        "de", "en", plan_lines("Good morning.", "The boat is ready.", "We sail at dawn."), config, out
    )
    data = json.loads(out.read_text())
    data["lines"][1]["text"] = "Das Boot ist bereit, sagte sie."  # the user's own German
    out.write_text(json.dumps(data, ensure_ascii=False, indent=2))
    users = out.read_bytes()

    # an edit that still belongs to its line is simply kept (today's per-line behaviour)
    same = translate.fn(
        "de", "en", plan_lines("Good morning.", "The boat is ready.", "We sail at dawn."), config, out
    )
    assert same[1].text == "Das Boot ist bereit, sagte sie." and same[1].edited

    new_plan = plan_lines("Good morning.", "The ship is ready.", "We sail at dawn.")
    with caplog.at_level(logging.WARNING, logger="qwen_dub"):
        lines = translate.fn("de", "en", new_plan, config, out)
    kept = json.loads(users)["lines"]
    assert json.loads(out.read_text())["lines"][1]["text"] == kept[1]["text"]
    assert [ln.text for ln in lines] == [e["text"] for e in kept]  # dubbed from the user's file
    assert all(ln.edited for ln in lines)  # the user's words: never shortened, never rewritten
    proposal = proposal_path(out)
    assert [e["source"] for e in json.loads(proposal.read_text())["lines"]][1] == "The ship is ready."
    warned = [r.getMessage() for r in caplog.records if "translation kept" in r.getMessage()]
    assert len(warned) == 1 and "lines.de.proposed.json" in warned[0] and "lines 1" in warned[0]
    before_adopt = out.read_bytes()

    adopted = translate.fn("de", "en", new_plan, build_config(**options, adopt_proposal=True), out)
    assert [ln.source for ln in adopted] == [ln.text for ln in new_plan]
    assert json.loads(out.read_text())["lines"][1]["source"] == "The ship is ready."
    assert replaced_path(out).read_bytes() == before_adopt
    assert not proposal.exists()


def test_a_speaker_the_user_re_voiced_stays_in_cast_json_when_the_plan_loses_them(
    sample_video: Path, tmp_path: Path
) -> None:
    """cast.json: the user gave S2 a voice; a new plan has only S1 (a proposal adopted, speakers merged):
    the user's S2 entry stays in the file, and is used again when S2 comes back."""
    import numpy as np
    import soundfile as sf

    from core.config import build_config
    from tasks.cast import cast, read_cast
    from tasks.segment import Line

    speech = tmp_path / "speech.wav"
    sf.write(speech, np.zeros(16_000 * 8, dtype=np.float32), 16_000)
    config = build_config(video=sample_video, langs="de", out=tmp_path / "job")
    two = [Line(0, 0.5, 2.0, "One.", speaker="S1"), Line(1, 3.0, 5.0, "Two.", speaker="S2")]
    path = tmp_path / "cast.json"
    cast.fn(config, two, speech, path)
    data = json.loads(path.read_text())
    data["speakers"]["S2"]["voices"]["api"] = "Kai"
    path.write_text(json.dumps(data))

    one = [Line(0, 0.5, 2.0, "One.", speaker="S1"), Line(1, 3.0, 5.0, "Two.", speaker="S1")]
    cast.fn(config, one, speech, path)
    assert read_cast(path)["S2"].voices["api"] == "Kai" and read_cast(path)["S2"].edited
    back = cast.fn(config, two, speech, path)
    assert back.voices["S2"] == "Kai"


@pytest.mark.e2e
def test_through_the_flow_an_edited_plan_survives_another_asr_model_and_adoption_works(
    prefect_harness,
    sample_video: Path,
    tiny_en_model: Path,
    other_model: Path,
    tmp_path: Path,
    dashscope_server,
) -> None:
    """The whole job (real Prefect flow, loopback DashScope): --asr-model changes under an edited plan."""
    from core.config import build_config
    from flows.dub import dub

    options = dict(
        video=sample_video, langs="de", out=tmp_path / "out", cache_dir=tmp_path / "cache", separator="none",
        source_lang="en", retry_base_delay_s=0.01,
    )  # fmt: skip
    dub(build_config(**options, asr_model=str(tiny_en_model)))
    plan = tmp_path / "out" / "segments.json"
    users = edit(plan)
    german = tmp_path / "out" / "lines.de.json"

    dub(build_config(**options, asr_model=str(other_model)))
    assert plan.read_bytes() == users
    assert json.loads(german.read_text())["lines"][0]["source"] == "Words the user wrote."
    proposal = proposal_path(plan)
    proposed = json.loads(proposal.read_text())

    dub(build_config(**options, asr_model=str(other_model), adopt_proposal=True))
    assert json.loads(plan.read_text()) == proposed
    assert replaced_path(plan).read_bytes() == users
    assert json.loads(german.read_text())["lines"][0]["source"] == proposed["lines"][0]["text"]
