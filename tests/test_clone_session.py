"""The job's cloned voices behind one object (cloning.session.CloneSession, one SpeakerClone per cloned
speaker) and revocation in one place (cloning.revoke.revoke_speaker, which purges the clip cache through
ClipCache.purge). Per-speaker cloning and voice prints: tests/test_clone_voiceprint.py."""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from cloning.ledger import ConsentError, add_record, load_record, read_audit, revoke_record
from cloning.revoke import revoke_speaker
from cloning.session import CloneSession, clone_spec
from cloning.voice import NOT_ENROLLED
from core.clip_cache import CLONE_SPEAKER, ClipCache
from core.config import DubConfig
from core.errors import ConfigError, InputError
from core.files import sha256_file
from core.job import JobPaths
from models.registry import API, register_tts, tts_engine, unregister
from tests.loopback_dashscope import LoopbackDashScope
from tests.speechlike import speechlike

ROOT = Path(__file__).resolve().parent.parent
USE = "Dubbing of channel X"
REF_TEXT = "This is the reference."
GRANTED, EXPIRES = datetime(2025, 1, 1, tzinfo=UTC), datetime(2099, 1, 1, tzinfo=UTC)


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    path = tmp_path / "ledger"
    document = path / "docs" / "alice-consent.pdf"
    document.parent.mkdir(parents=True)
    document.write_bytes(b"%PDF-1.4 consent to voice cloning, signed by Alice Example")
    sample = tmp_path / "alice-sample.wav"  # the voice the reference fixture has
    sf.write(sample, speechlike(4.0, 24_000), 24_000, subtype="PCM_16")
    add_record(
        path, speaker_id="alice", speaker_name="Alice Example", granted_by="Alice Example",
        document=document, permitted_languages=["ja", "en"], permitted_uses=[USE],
        granted_at=GRANTED, expires_at=EXPIRES, sample=sample,
    )  # fmt: skip
    return path


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    path = tmp_path / "reference.wav"
    sf.write(path, speechlike(4.0, 24_000), 24_000, subtype="PCM_16")
    return path


def job_config(ledger: Path, tmp_path: Path, **values: Any) -> DubConfig:
    base: dict[str, Any] = {
        "video": tmp_path / "video.mp4", "langs": ["ja", "en"], "tts": API, "clone": "alice",
        "consent_dir": ledger, "clone_use": USE, "cache_dir": tmp_path / "cache", "out": tmp_path / "job",
        "retry_base_delay_s": 0.0, "source_lang": "en",
    }  # fmt: skip
    return DubConfig(**{**base, **values})


def events(ledger: Path, name: str) -> list[dict[str, Any]]:
    return [e for e in read_audit(ledger) if e["event"] == name]


# -- opening ---------------------------------------------------------------------------------------------


def test_open_checks_consent_and_the_reference_and_calls_no_engine(
    ledger: Path, reference: Path, tmp_path: Path, dashscope_server: LoopbackDashScope
) -> None:
    plain = DubConfig(video=tmp_path / "video.mp4", langs=["ja"], cache_dir=tmp_path / "cache")
    assert CloneSession.open(plain) is None

    session = CloneSession.open(job_config(ledger, tmp_path, clone_ref=reference, clone_ref_text=REF_TEXT))
    assert session is not None and session.every_line
    (clone,) = session.clones
    assert (clone.speaker_id, clone.engine, clone.use, clone.languages) == (
        "alice",
        API,
        USE,
        ("ja", "en"),
    )
    assert clone.record_hash == load_record(ledger, "alice").record_hash() and clone.plan_speaker == "*"
    assert clone.reference == reference and clone.reference_text == REF_TEXT
    assert pickle.loads(pickle.dumps(session)) == session and hash(session)  # a task argument on Dask

    with pytest.raises(ConsentError, match=r"does not cover German \(de\)") as refused:
        CloneSession.open(job_config(ledger, tmp_path, langs=["ja", "de"]))
    assert refused.value.exit_code == 2 and "\n" not in str(refused.value)
    with pytest.raises(ConsentError, match="does not cover the use 'Trailers'"):
        CloneSession.open(job_config(ledger, tmp_path, clone_use="Trailers"))

    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(24_000 * 5, dtype=np.float32), 24_000)
    with pytest.raises(InputError, match="silent"):
        CloneSession.open(job_config(ledger, tmp_path, clone_ref=silent))

    revoke_record(ledger, "alice", "asked us to stop", now=datetime(2026, 2, 1, tzinfo=UTC))
    with pytest.raises(ConsentError, match=r"revoked on 2026-02-01 .*\(asked us to stop\)"):
        CloneSession.open(job_config(ledger, tmp_path))
    assert dashscope_server.count() == 0
    assert not (tmp_path / "cache").exists() and not (tmp_path / "job").exists()


def test_an_engine_without_clone_support_is_refused(ledger: Path, tmp_path: Path) -> None:
    register_tts(dataclasses.replace(tts_engine(API), name="no-clone-engine", clone=None))
    try:
        config = job_config(ledger, tmp_path).model_copy(update={"tts": "no-clone-engine"})
        with pytest.raises(ConfigError, match="no-clone-engine TTS engine cannot speak with a cloned voice"):
            CloneSession.open(config)
        with pytest.raises(ConfigError, match="cannot speak with a cloned voice"):
            clone_spec("no-clone-engine")
    finally:
        unregister("no-clone-engine")


# -- a job -----------------------------------------------------------------------------------------------


def test_a_job_creates_its_voice_once_audits_its_use_and_stops_when_consent_is_revoked(
    ledger: Path, reference: Path, tmp_path: Path, dashscope_server: LoopbackDashScope
) -> None:
    config = job_config(ledger, tmp_path, clone_ref=reference, clone_ref_text=REF_TEXT)
    job = JobPaths(config.out_dir, config.name, config.container)
    session = CloneSession.open(config)
    assert session is not None
    (clone,) = session.clones

    dry = config.model_copy(update={"dry_run": True})
    session.prepare(dry, tmp_path / "unused-vocals.wav", [], job)  # the reference, and no voice
    assert job.clone_reference.is_file() and dashscope_server.count() == 0
    estimate = clone.synthesizer(dry, job, require_key=False, create=False)
    assert estimate.identity()["voice"] == NOT_ENROLLED and dashscope_server.count() == 0

    session.prepare(config, tmp_path / "unused-vocals.wav", [], job)
    assert dashscope_server.count("voice") == 1
    assert dashscope_server.requests_of("voice")[0].body["input"]["text"] == REF_TEXT
    synth = clone.synthesizer(config, job)
    assert session.synthesizers(config, job) == {"*": synth}
    travelled = pickle.loads(pickle.dumps(session))  # as a Dask worker receives it: same process cache
    assert travelled.clones[0].synthesizer(config, JobPaths(config.out_dir, config.name)) is synth
    assert dashscope_server.count("voice") == 1
    (made,) = events(ledger, "clone_created")
    assert (made["route"], made["voice_id"]) == (API, synth.identity()["voice"])

    session.audit_use(config, "ja", 4)
    (used,) = events(ledger, "clone_synthesis")
    assert (used["route"], used["job_id"], used["language"], used["line_count"]) == (API, "video", "ja", 4)
    job_events = [e for e in read_audit(ledger) if e["event"] != "consent_granted"]  # the job's entries
    assert {e["event"] for e in job_events} == {"voice_print_checked", "clone_created", "clone_synthesis"}
    assert {e["job_id"] for e in job_events} == {"video"}  # every entry names the job

    disclosure = session.disclosure(config)
    assert "alice" in disclosure and clone.record_hash[:12] in disclosure
    assert "Alice Example" not in disclosure and "qwen3-tts-vc" in disclosure
    report = session.report(config, synth)
    assert report["voice_id"] == synth.identity()["voice"] and report["route"] == API
    assert report["reference_sha256"] == sha256_file(job.clone_reference)
    assert report["consent_record_sha256"] == clone.record_hash and report["consent_use"] == USE
    assert report["voice_print_similarity"] > 0.99  # the sample and the reference are one recording
    assert report["consent_expires_at"] == EXPIRES.isoformat()

    revoke_record(ledger, "alice", "withdrawn")
    with pytest.raises(ConsentError, match="revoked"):
        clone.synthesizer(config, job)
    with pytest.raises(ConsentError, match="revoked"):
        session.audit_use(config, "en", 4)
    assert len(events(ledger, "clone_synthesis")) == 1


def test_a_record_changed_since_the_job_started_stops_it(
    ledger: Path, reference: Path, tmp_path: Path
) -> None:
    session = CloneSession.open(job_config(ledger, tmp_path))
    assert session is not None
    add_record(
        ledger, speaker_id="alice", speaker_name="Alice Example", granted_by="Alice Example",
        document=ledger / "docs" / "alice-consent.pdf", permitted_languages=["ja", "en", "ko"],
        permitted_uses=[USE], granted_at=GRANTED, expires_at=EXPIRES, replace=True, sample=reference,
    )  # fmt: skip
    with pytest.raises(ConsentError, match="changed since it was checked"):
        session.audit_use(job_config(ledger, tmp_path), "ja", 1)


# -- revocation ------------------------------------------------------------------------------------------


def _clip_cache(cache: Path) -> tuple[ClipCache, dict[str, str]]:
    """Three entries: one spoken with alice's clone, one with bob's, one with a catalogue voice."""
    clips = ClipCache(cache)
    audio = speechlike(0.5, 24_000)
    keys = {"alice": "aa" + "0" * 62, "bob": "bb" + "0" * 62, "plain": "cc" + "0" * 62}
    clips.put(keys["alice"], audio, 24_000, {CLONE_SPEAKER: "alice", "billed_characters": 5})
    clips.put(keys["bob"], audio, 24_000, {CLONE_SPEAKER: "bob"})
    clips.put(keys["plain"], audio, 24_000, {"billed_characters": 5})
    return clips, keys


def test_clip_cache_purge_deletes_the_entries_its_predicate_selects(tmp_path: Path) -> None:
    assert ClipCache(tmp_path / "empty").purge(lambda meta: True) == []
    clips, keys = _clip_cache(tmp_path / "cache")
    hit = clips.get(keys["bob"])
    assert hit is not None
    assert clips.purge(lambda meta: meta.get(CLONE_SPEAKER) == "bob") == [hit[0]]
    assert not hit[0].exists() and not hit[0].with_suffix(".json").exists()
    assert clips.get(keys["bob"]) is None
    assert clips.get(keys["alice"]) is not None and clips.get(keys["plain"]) is not None


def test_revocation_purges_the_speakers_clips_through_the_clip_cache_and_leaves_the_others(
    ledger: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    clips, keys = _clip_cache(cache)
    calls: list[list[Path]] = []
    original = ClipCache.purge

    def purge(self: ClipCache, predicate: Any) -> list[Path]:
        calls.append(original(self, predicate))
        return calls[-1]

    monkeypatch.setattr(ClipCache, "purge", purge)
    result = revoke_speaker(ledger, "alice", "withdrawn", cache)
    assert result.newly_revoked and result.complete and result.purged_clips == 1
    assert len(calls) == 1 and [p.stem for p in calls[0]] == [keys["alice"]]
    assert clips.get(keys["alice"]) is None
    assert clips.get(keys["bob"]) is not None and clips.get(keys["plain"]) is not None
    assert load_record(ledger, "alice").revoked


def test_the_consent_command_users_type_still_works(ledger: Path, tmp_path: Path) -> None:
    """`python -m flows.consent ...` (the shim over cloning/cli.py): revoke purges the speaker's clips."""
    cache = tmp_path / "cache"
    clips, keys = _clip_cache(cache)
    proc = subprocess.run(
        [sys.executable, "-m", "flows.consent", "revoke", "alice", "--ledger", str(ledger),
         "--reason", "moved on", "--cache-dir", str(cache)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "consent revoked: alice",
        "deleted local clone prompts: 0",
        "deleted cached clips: 1",
    ]
    assert clips.get(keys["alice"]) is None and clips.get(keys["bob"]) is not None


def test_revoke_leaves_no_file_made_with_the_voice_in_two_caches_and_two_job_folders(
    ledger: Path, reference: Path, tmp_path: Path, dashscope_server: LoopbackDashScope,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A job through a deployment's cache folder and another through the default one; `revoke` is given
    the default only, and finds the other through the ledger's journal."""
    from cloning.cli import main as consent_cli
    from core.languages import get_language

    caches = {"deployment": tmp_path / "deployment-cache", "default": tmp_path / "default-cache"}
    jobs: list[JobPaths] = []
    for name, cache_dir in caches.items():
        config = job_config(
            ledger, tmp_path, clone_ref=reference, clone_ref_text=REF_TEXT, cache_dir=cache_dir,
            out=tmp_path / f"job-{name}",
        )  # fmt: skip
        job = JobPaths(config.out_dir, config.name, config.container)
        jobs.append(job)
        session = CloneSession.open(config)
        assert session is not None
        session.prepare(config, tmp_path / "unused-vocals.wav", [], job)  # reference, voice check, enrollment
        clip = session.clones[0].synthesizer(config, job).synthesize("Hello.", get_language("ja"))
        # what the synthesis, fit and assemble stages leave (tasks/synthesize.py, tasks/line.py, audio/)
        wav, _ = ClipCache(cache_dir).put(
            "ab" + "0" * 62, clip.audio, clip.sample_rate, {CLONE_SPEAKER: "alice"}
        )
        link = job.clips_dir("ja") / "0000.wav"
        link.parent.mkdir(parents=True)
        link.hardlink_to(wav)
        fitted = job.work / "fit" / "ja" / "0000.wav"
        fitted.parent.mkdir(parents=True)
        sf.write(fitted, clip.audio, clip.sample_rate)
        job.dub_audio("ja").write_bytes(b"mix")
        job.vocals.write_bytes(b"the video's own speech")  # taken from the video: kept
        job.single("ja").write_bytes(b"video")
        job.stem("ja").write_bytes(b"stem")
        job.report.write_text("{}")
    assert len(dashscope_server.enrolled_voices()) == 2

    def made_with_the_voice() -> list[Path]:
        found: list[Path] = []
        for cache_dir in caches.values():
            for meta in (cache_dir / "clips").rglob("*.json"):
                if CLONE_SPEAKER in meta.read_text():
                    found += [meta, meta.with_suffix(".wav")]
            found += [p for p in cache_dir.rglob("*") if "alice" in p.name and p.is_file()]
        for job in jobs:
            found += [p for p in job.work.rglob("*") if p.is_file() and p.suffix in {".wav", ".mka"}
                      and p != job.vocals]  # fmt: skip
        return found

    assert len(made_with_the_voice()) >= 12
    argv = ["revoke", "alice", "--ledger", str(ledger), "--cache-dir", str(caches["default"])]
    assert consent_cli(argv) == 0
    out = capsys.readouterr().out
    assert made_with_the_voice() == []
    assert dashscope_server.enrolled_voices() == {}
    assert all(job.vocals.is_file() and job.report.is_file() for job in jobs)
    for job in jobs:  # deliverables: listed, kept
        assert f"{job.single('ja')}: kept (delete with --purge-outputs)" in out
        assert job.single("ja").is_file() and job.stem("ja").is_file()
    assert consent_cli([*argv, "--purge-outputs"]) == 0
    out = capsys.readouterr().out
    assert all(not job.single("ja").exists() and not job.stem("ja").exists() for job in jobs)
    assert f"{jobs[0].stem('ja')}: deleted" in out
