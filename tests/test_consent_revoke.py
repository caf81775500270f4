"""Revocation finds what the ledger journalled: a voice enrolled at the (loopback) service whose id was never
kept because the process died right after enrollment, and clones made through another cache folder than the
one `revoke` is pointed at."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import soundfile as sf

from cloning.cli import main as consent_cli
from cloning.ledger import add_record, artefacts_of, check_consent, load_record, read_audit
from cloning.revoke import revoke_speaker, voice_named
from cloning.voice import api_clone_synthesizer, prompt_id_of
from core.retry import RetryPolicy
from models.dashscope_voice_clone import VoiceEnrollment, VoiceIdCache
from tests.loopback_dashscope import LoopbackDashScope
from tests.speechlike import speechlike

USE = "Dubbing of the Example channel"
NO_WAIT = RetryPolicy(base_delay_s=0.0)
REF_TEXT = "This is a reference recording."


class Crash(BaseException):
    """The process dying right after the service answered (not an Exception: nothing catches it)."""


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    path = tmp_path / "reference.wav"
    sf.write(path, speechlike(4.0, 24_000), 24_000, subtype="PCM_16")
    return path


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    path = tmp_path / "ledger"
    path.mkdir()
    (path / "doc.pdf").write_bytes(b"%PDF-1.4 consent of alice")
    add_record(
        path, speaker_id="alice", speaker_name="Alice", granted_by="Alice", document=path / "doc.pdf",
        permitted_languages=["ja"], permitted_uses=[USE], granted_at=datetime(2025, 1, 1, tzinfo=UTC),
    )  # fmt: skip
    return path


def test_a_crash_between_enrollment_and_keeping_the_id_cannot_hide_the_voice(
    ledger: Path, reference: Path, tmp_path: Path, dashscope_server: LoopbackDashScope,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    cache = tmp_path / "cache"
    grant = check_consent(ledger, "alice", ["ja"], USE)
    # someone else's voice on the same account, named like another speaker: never touched
    other = VoiceEnrollment(retry=NO_WAIT).create(reference, preferred_name="alice_x", text=REF_TEXT)

    def crash(self: VoiceIdCache, entry: dict) -> None:
        raise Crash

    monkeypatch.setattr(VoiceIdCache, "add", crash)
    with pytest.raises(Crash):
        api_clone_synthesizer(grant, reference, REF_TEXT, cache, retry=NO_WAIT)
    monkeypatch.undo()
    monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", dashscope_server.base_http_api_url)
    monkeypatch.setenv("DASHSCOPE_API_KEY", dashscope_server.api_key)
    (hidden,) = [v for v in dashscope_server.enrolled_voices() if v != other]
    assert VoiceIdCache(cache, "alice").entries() == []  # its id was never kept
    assert [e["event"] for e in artefacts_of(ledger, "alice")] == ["enroll_intent"]  # but the intent was

    code = consent_cli(
        ["revoke", "alice", "--ledger", str(ledger), "--cache-dir", str(tmp_path / "elsewhere")]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"deleted API voice: {hidden}" in out
    assert list(dashscope_server.enrolled_voices()) == [other]
    assert load_record(ledger, "alice").revoked
    (deleted,) = [e for e in read_audit(ledger) if e["event"] == "voice_deleted"]
    assert deleted["voice_id"] == hidden and deleted["status"] == "deleted"


def test_revocation_deletes_voices_enrolled_through_another_cache_folder(
    ledger: Path, reference: Path, tmp_path: Path, dashscope_server: LoopbackDashScope
) -> None:
    deployment_cache, default_cache = tmp_path / "deployment-cache", tmp_path / "default-cache"
    grant = check_consent(ledger, "alice", ["ja"], USE)
    voice = api_clone_synthesizer(grant, reference, REF_TEXT, deployment_cache, retry=NO_WAIT).voice
    assert [e.get("kind") for e in artefacts_of(ledger, "alice")] == [None, "enrolled_voice"]

    result = revoke_speaker(ledger, "alice", "withdrawn", default_cache, retry=NO_WAIT)
    assert result.complete and result.deleted_voices == [voice]
    assert dashscope_server.enrolled_voices() == {}
    assert not (deployment_cache / "voices" / "alice.json").exists()


def test_revocation_without_a_key_reports_the_unlisted_voices_and_fails(
    ledger: Path, reference: Path, tmp_path: Path, dashscope_server: LoopbackDashScope,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    grant = check_consent(ledger, "alice", ["ja"], USE)
    api_clone_synthesizer(grant, reference, REF_TEXT, tmp_path / "cache", retry=NO_WAIT)
    monkeypatch.delenv("DASHSCOPE_API_KEY")
    code = consent_cli(["revoke", "alice", "--ledger", str(ledger), "--cache-dir", str(tmp_path / "other")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "voices named alice in intl" in err
    assert len(dashscope_server.enrolled_voices()) == 1


def test_voice_names_and_prompt_file_names() -> None:
    assert voice_named("qwen-tts-vc-alice-voice-20260101000000-0a1b2c3d", "alice")
    assert not voice_named("qwen-tts-vc-alice_x-voice-20260101000000-0a1b2c3d", "alice")
    assert prompt_id_of(Path("qwen-clone-0123456789ab-0123456789abcdef.pt")) == "0123456789abcdef"
    assert prompt_id_of(Path("notes-0123456789abcdef.pt")) is None
