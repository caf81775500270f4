"""Consent bound to a voice (cloning/voiceprint.py) and per-speaker cloning (`--clone S2=guest`): a clone is
refused, before any model load or API call, unless the cloned speaker's reference (chosen from that
speaker's lines only) matches the voice print of its consent record; the other speakers keep their
catalogue voices; audit and revocation work per speaker."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from cloning.ledger import ConsentError, add_record, load_record, read_audit
from cloning.session import CloneSession
from cloning.voiceprint import MATCH_THRESHOLD, similarity_to
from core.config import build_config
from core.errors import ConfigError
from tests.loopback_dashscope import LoopbackDashScope

ROOT = Path(__file__).resolve().parent.parent
USE = "dubbing of the sample channel"
GRANTED, EXPIRES = datetime(2025, 1, 1, tzinfo=UTC), datetime(2099, 1, 1, tzinfo=UTC)
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


def write_plan(path: Path, sample_truth: dict[str, Any]) -> dict[str, int]:
    """Four lines of two sentences each (6-6.5 s: each can be a reference), speakers S1 S2 S1 S2.
    Returns {text: line index}."""
    sentences = sample_truth["sentences"]
    lines = []
    for k in range(len(sentences) // 2):
        a, b = sentences[2 * k], sentences[2 * k + 1]
        lines.append({"index": k, "start": a["start"], "end": b["end"], "text": f"{a['text']} {b['text']}",
                      "speaker": f"S{k % 2 + 1}"})  # fmt: skip
    path.write_text(json.dumps({"source_language": "en", "lines": lines}))
    return {ln["text"]: ln["index"] for ln in lines}


@pytest.fixture
def video_sample(sample_video: Path, sample_truth: dict[str, Any], tmp_path: Path) -> Path:
    """A recording of the narrator (the sample video's one voice): S1's third line, as a guest's sample."""
    s = sample_truth["sentences"]
    out = tmp_path / "guest-sample.wav"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(sample_video), "-ss", str(s[4]["start"]),
         "-to", str(s[5]["end"]), "-ac", "1", "-ar", "24000", str(out)],
        check=True,
    )  # fmt: skip
    return out


@pytest.fixture
def other_voice(tmp_path: Path) -> Path:
    """Another person's voice (espeak-ng en+f4, its own text)."""
    assert shutil.which("espeak-ng"), "espeak-ng is missing (scripts/install_system_packages.sh installs it)"
    out = tmp_path / "other.wav"
    text = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background."
    subprocess.run(["espeak-ng", "-v", "en+f4", "-w", str(out), text], check=True)
    return out


def make_ledger(tmp_path: Path, records: dict[str, Path | None]) -> Path:
    """A ledger with one record per consent id, each with that sample's voice print (None: no print)."""
    ledger = tmp_path / "ledger"
    ledger.mkdir(exist_ok=True)
    document = ledger / "signed.pdf"
    document.write_bytes(b"%PDF-1.4 signed consent")
    for speaker_id, sample in records.items():
        add_record(
            ledger, speaker_id=speaker_id, speaker_name=f"{speaker_id} Example", granted_by="them",
            document=document, permitted_languages=["en", "ja"], permitted_uses=[USE],
            granted_at=GRANTED, expires_at=EXPIRES, sample=sample,
        )  # fmt: skip
    return ledger


def job_config(
    sample_video: Path, plan: Path, ledger: Path, tmp_path: Path, clone: str, **values: Any
) -> Any:
    return build_config(
        video=sample_video, langs="en", out=tmp_path / "out", cache_dir=tmp_path / "cache", separator="none",
        segments=plan, voice="Cherry", clone=clone, consent_dir=ledger, clone_use=USE,
        retry_base_delay_s=0.01, **values,
    )  # fmt: skip


def events(ledger: Path, name: str) -> list[dict[str, Any]]:
    return [e for e in read_audit(ledger) if e["event"] == name]


# -- options ---------------------------------------------------------------------------------------------


def test_clone_option_maps_plan_speakers_to_consent_records(tmp_path: Path) -> None:
    base = {"video": tmp_path / "v.mp4", "langs": "en", "consent_dir": tmp_path, "clone_use": USE}
    config = build_config(**base, clone=" S2=guest, S3=host ")
    assert config.clone == "S2=guest,S3=host" and config.clone_speakers == {"S2": "guest", "S3": "host"}
    config = build_config(**base, clone="S2=guest", cast="S1=Ethan")
    assert config.cast == {"S1": "Ethan"}
    every = build_config(**base, clone="guest")
    assert every.clone_speakers == {"*": "guest"}
    refusals = [
        ({"clone": "S2=guest,host"}, "not both"),
        ({"clone": "S2=guest,S2=host"}, "names speaker S2 twice"),
        ({"clone": "S2="}, "expected SPEAKER=CONSENT_ID"),
        ({"clone": "S2=no/such"}, "invalid consent speaker id"),
        ({"clone": "S2=guest", "cast": "S2=Ethan"}, "both give a voice to speaker S2"),
        ({"clone": "S2=guest,S3=host", "clone_ref": tmp_path / "r.wav"}, "one reference"),
    ]
    for values, message in refusals:
        with pytest.raises(ConfigError, match=message) as refused:
            build_config(**{**base, **values})
        assert "\n" not in str(refused.value) and refused.value.exit_code == 2


# -- voice prints ----------------------------------------------------------------------------------------


@needs_espeak
def test_a_record_holds_the_voice_print_of_its_sample_and_not_the_audio(
    tmp_path: Path, video_sample: Path, other_voice: Path
) -> None:
    ledger = make_ledger(tmp_path, {"guest": video_sample})
    record = load_record(ledger, "guest")
    assert record.voice_print is not None and len(record.voice_print.vector) == 256
    assert record.voice_print.sample is None and not (ledger / "samples").exists()
    (granted,) = events(ledger, "consent_granted")
    assert granted["sample_sha256"] == record.voice_print.sample_sha256
    assert similarity_to(record.voice_print, video_sample) > 0.99
    assert similarity_to(record.voice_print, other_voice) < MATCH_THRESHOLD - 0.1

    # --keep-sample keeps the audio; revocation deletes it with the voice print
    add_record(
        ledger, speaker_id="kept", speaker_name="Kept", granted_by="Kept", document=ledger / "signed.pdf",
        permitted_languages=["en"], permitted_uses=[USE], sample=video_sample, keep_sample=True,
    )  # fmt: skip
    kept = load_record(ledger, "kept").voice_print
    assert kept is not None and kept.sample == "samples/kept.wav" and (ledger / kept.sample).is_file()
    from cloning.ledger import revoke_record

    revoked, _ = revoke_record(ledger, "kept", "withdrawn")
    assert revoked.voice_print is None and not (ledger / "samples" / "kept.wav").exists()


def test_a_record_without_a_voice_print_is_refused_with_one_line(tmp_path: Path, sample_video: Path) -> None:
    ledger = make_ledger(tmp_path, {"guest": None})
    config = build_config(video=sample_video, langs="en", clone="S2=guest", consent_dir=ledger, clone_use=USE)
    with pytest.raises(ConsentError, match=r"'guest' has no voice print.*--sample FILE --replace") as refused:
        CloneSession.open(config)
    assert "\n" not in str(refused.value) and refused.value.exit_code == 2


def test_the_consent_cli_stores_a_voice_print(tmp_path: Path, video_sample: Path) -> None:
    document = tmp_path / "signed.pdf"
    document.write_bytes(b"signed")
    ledger = tmp_path / "ledger"
    add = [sys.executable, "-m", "flows.consent", "add", "guest", "--ledger", str(ledger), "--name", "Guest",
           "--granted-by", "Guest", "--document", str(document), "--langs", "en", "--use", USE]  # fmt: skip
    proc = subprocess.run([*add, "--sample", str(video_sample)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and "with a voice print" in proc.stdout, proc.stderr
    shown = subprocess.run([sys.executable, "-m", "flows.consent", "show", "guest", "--ledger", str(ledger)],
                           capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    voice_print = json.loads(shown.stdout)["record"]["voice_print"]
    assert voice_print["dimensions"] == 256 and "vector" not in voice_print
    proc = subprocess.run([*add, "--replace", "--sample", str(tmp_path / "none.wav")], capture_output=True,
                          text=True, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "does not exist" in proc.stderr


# -- a job -----------------------------------------------------------------------------------------------


@pytest.mark.e2e
@needs_espeak
def test_a_mismatched_voice_print_is_refused_before_any_call_and_the_right_record_passes(
    prefect_harness: None,
    sample_video: Path,
    sample_truth: dict[str, Any],
    video_sample: Path,
    other_voice: Path,
    tmp_path: Path,
    dashscope_server: LoopbackDashScope,
) -> None:
    """Acceptance: cloning S2 with a record whose voice print is another voice's is refused (one line,
    exit 2) before any API call; the record with S2's voice passes, and only S2's lines are cloned."""
    from flows.dub import dub

    plan = tmp_path / "plan.json"
    texts = write_plan(plan, sample_truth)
    ledger = make_ledger(tmp_path, {"impostor": other_voice, "guest": video_sample})

    with pytest.raises(ConsentError) as refused:
        dub(job_config(sample_video, plan, ledger, tmp_path, "S2=impostor"))
    message = str(refused.value)
    assert "speaker S2" in message and "'impostor'" in message and "\n" not in message
    assert refused.value.exit_code == 2
    assert dashscope_server.count() == 0  # no enrollment, no translation, no synthesis
    (checked,) = events(ledger, "voice_print_checked")
    assert (checked["status"], checked["plan_speaker"], checked["speaker_id"]) == (
        "mismatch",
        "S2",
        "impostor",
    )

    dub(job_config(sample_video, plan, ledger, tmp_path, "S2=guest"))
    assert dashscope_server.count("voice") == 1
    (enrolled,) = dashscope_server.enrolled_voices()
    seen = {
        texts[r.body["input"]["text"]]: r.body["input"]["voice"] for r in dashscope_server.requests_of("tts")
    }
    assert seen == {0: "Cherry", 1: enrolled, 2: "Cherry", 3: enrolled}  # only S2's lines are cloned

    work = tmp_path / "out" / "work"
    window = json.loads((work / "clone_reference.S2.wav.window.json").read_text())
    assert window["speaker"] == "S2" and set(window["line_indices"]) <= {1, 3}  # chosen from S2's lines
    passed = [e for e in events(ledger, "voice_print_checked") if e["status"] == "match"]
    assert passed and {e["speaker_id"] for e in passed} == {"guest"}
    assert passed[0]["similarity"] >= MATCH_THRESHOLD
    (used,) = events(ledger, "clone_synthesis")
    assert (used["speaker_id"], used["plan_speaker"], used["line_count"]) == ("guest", "S2", 2)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    block = report["job"]["clone"]["speakers"]["S2"]
    assert block["speaker_id"] == "guest" and block["voice_print_similarity"] >= MATCH_THRESHOLD
    manifest = json.loads((work / "clips.en.json").read_text())
    assert set(manifest["voices"]) == {"Cherry", "clone:S2"}

    # revocation is per speaker: guest's clips go, the catalogue voice's stay
    from cloning.revoke import revoke_speaker
    from core.clip_cache import CLONE_SPEAKER, ClipCache

    cache = ClipCache(tmp_path / "cache")
    before = cache.purge(lambda meta: False)
    assert before == []
    result = revoke_speaker(ledger, "guest", "withdrawn", tmp_path / "cache")
    assert result.purged_clips == 2 and result.deleted_voices == [enrolled]
    assert cache.purge(lambda meta: meta.get(CLONE_SPEAKER) is None) != []  # Cherry's clips were still there
    assert not load_record(ledger, "impostor").revoked


@pytest.mark.e2e
def test_a_plan_speaker_the_plan_lacks_is_one_line(
    prefect_harness: None,
    sample_video: Path,
    sample_truth: dict[str, Any],
    video_sample: Path,
    tmp_path: Path,
    dashscope_server: LoopbackDashScope,
) -> None:
    from flows.dub import dub

    plan = tmp_path / "plan.json"
    write_plan(plan, sample_truth)
    ledger = make_ledger(tmp_path, {"guest": video_sample})
    with pytest.raises(
        ConfigError, match=r"--clone S9=guest: the plan has no speaker S9 \(its speakers: S1, S2\)"
    ):
        dub(job_config(sample_video, plan, ledger, tmp_path, "S9=guest"))
    assert dashscope_server.count() == 0


def test_the_reference_is_chosen_from_the_speakers_lines_only(tmp_path: Path) -> None:
    """The cleanest window belongs to S1; S2's reference is S2's line, and S1's line next to it bounds it."""
    from cloning.reference import select_reference
    from tasks.segment import Line
    from tests.speechlike import speechlike

    rate = 24_000
    audio = np.zeros(rate * 20, dtype=np.float32)
    audio[rate * 1 : rate * 7] = speechlike(6.0, rate, level=0.5)  # S1: loud and clean
    rng = np.random.default_rng(0)
    audio[rate * 8 : rate * 12] = speechlike(4.0, rate, level=0.2) + 0.01 * rng.standard_normal(4 * rate)
    vocals = tmp_path / "vocals.wav"
    sf.write(vocals, audio, rate)
    lines = [Line(0, 1.0, 7.0, "S1 speaks.", speaker="S1"), Line(1, 8.0, 12.0, "S2 speaks.", speaker="S2")]
    _, anyone = select_reference(vocals, lines, out_wav=tmp_path / "any.wav")
    assert anyone == "S1 speaks."
    _, text = select_reference(vocals, lines, out_wav=tmp_path / "s2.wav", speaker="S2")
    assert text == "S2 speaks."
    window = json.loads((tmp_path / "s2.wav.window.json").read_text())
    assert window["line_indices"] == [1] and window["start"] >= 7.0
    with pytest.raises(Exception, match="of speaker S3"):
        select_reference(vocals, lines, out_wav=tmp_path / "s3.wav", speaker="S3")


@pytest.mark.e2e
def test_a_clone_run_leaves_no_text_or_document_in_the_prefect_database(
    prefect_harness: None,
    sample_video: Path,
    sample_truth: dict[str, Any],
    video_sample: Path,
    tmp_path: Path,
    dashscope_server: LoopbackDashScope,
) -> None:
    """Acceptance: after a clone run through the real (temporary) Prefect server, its SQLite database holds
    none of the script text, the reference transcript (--clone-ref-text) or the signed document."""
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL

    from flows.dub import dub

    plan = tmp_path / "plan.json"
    texts = write_plan(plan, sample_truth)
    ledger = make_ledger(tmp_path, {"guest": video_sample})
    transcript = "Private words of the reference, 7f3a9c"
    dub(job_config(sample_video, plan, ledger, tmp_path, "S2=guest", clone_ref=video_sample,
                   clone_ref_text=transcript))  # fmt: skip
    assert dashscope_server.count("voice") == 1
    assert dashscope_server.requests_of("voice")[0].body["input"]["text"] == transcript  # it was used

    url = str(PREFECT_API_DATABASE_CONNECTION_URL.value())
    database = Path(url.split(":///", 1)[1])
    stored = b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))
    assert b"S2=guest" in stored  # the run's parameters are there (the scan reads the right database)
    secrets = [transcript, (ledger / "signed.pdf").read_text(), *texts]
    for secret in secrets:
        for form in (secret.encode(), secret.encode("utf-16-le")):
            assert form[:40] not in stored, secret
