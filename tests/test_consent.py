"""Consent-gated voice cloning: the ledger, every refusal (with no engine call), both engines' clones
(qwen-tts on a tiny random Qwen3-TTS Base checkpoint through the real loader, DashScope against the
loopback server through the real SDK), the audit log, revocation and the consent CLI. The job-level
object (cloning.session.CloneSession) is tested in tests/test_clone_session.py."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf

import models.qwen_local_tts as qlt
from cloning.cli import main as consent_cli
from cloning.ledger import (
    AUDIT_FILE,
    ConsentError,
    ConsentGrant,
    ConsentRecord,
    add_record,
    append_audit,
    audit_clone_synthesis,
    check_consent,
    load_record,
    read_audit,
    revoke_record,
)
from cloning.revoke import raise_if_incomplete, revoke_speaker
from cloning.session import clone_spec
from cloning.voice import api_clone_synthesizer, clone_prompt_dir, local_clone_synthesizer
from core.clip_cache import CLONE_SPEAKER
from core.config import DubConfig
from core.errors import InputError, UpstreamError
from core.files import sha256_file
from core.languages import get_language
from core.retry import RetryPolicy
from models.dashscope_voice_clone import (
    ENROLLMENT_MODEL,
    VC_MODEL,
    DashScopeCloneTTS,
    VoiceEnrollment,
    VoiceIdCache,
)
from models.qwen_local_tts import GenerationParams, LengthGuard, QwenLocalTTS
from models.registry import API, LOCAL
from tests.loopback_dashscope import LoopbackDashScope
from tests.speechlike import speechlike

ROOT = Path(__file__).resolve().parent.parent
JA, EN = get_language("ja"), get_language("en")
USE = "Dubbing of channel X"
REF_TEXT = "This is the reference."
LINES = [
    "Secret line number one.",
    "Another confidential sentence.",
    "Third private phrase.",
    "Fourth words.",
]
GRANTED, EXPIRES = datetime(2025, 1, 1, tzinfo=UTC), datetime(2099, 1, 1, tzinfo=UTC)
FAST = LengthGuard(
    min_ceiling_s=0.4, headroom=1.0, max_s_per_char=0.01, max_s_per_wide_char=0.02, min_s_per_char=0.0,
    min_s_per_wide_char=0.0,
)  # fmt: skip
TINY_OPTIONS: dict[str, Any] = {"guard": FAST, "generation": GenerationParams(max_new_tokens=3), "retries": 0}
NO_WAIT = RetryPolicy(base_delay_s=0.0)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny matrices: OpenMP hand-offs between 2 busy cores cost more than the arithmetic."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    path = tmp_path / "reference.wav"
    sf.write(path, speechlike(4.0, 24_000), 24_000, subtype="PCM_16")
    return path


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    """A ledger with one record: alice, Japanese and English, one use, a signed document inside it."""
    path = tmp_path / "ledger"
    document = path / "docs" / "alice-consent.pdf"
    document.parent.mkdir(parents=True)
    document.write_bytes(b"%PDF-1.4 consent to voice cloning, signed by Alice Example")
    add_record(
        path, speaker_id="alice", speaker_name="Alice Example", granted_by="Alice Example",
        document=document, permitted_languages=["ja", "en"], permitted_uses=[USE],
        granted_at=GRANTED, expires_at=EXPIRES,
    )  # fmt: skip
    return path


@pytest.fixture
def engine_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts QwenLocalTTS constructions and model loads (the local engine's entry points)."""
    calls = {"init": 0, "load": 0}
    original_init, original_load = QwenLocalTTS.__init__, qlt._load

    def init(self: QwenLocalTTS, *args: Any, **kwargs: Any) -> None:
        calls["init"] += 1
        original_init(self, *args, **kwargs)

    def load(*args: Any) -> Any:
        calls["load"] += 1
        return original_load(*args)

    monkeypatch.setattr(QwenLocalTTS, "__init__", init)
    monkeypatch.setattr(qlt, "_load", load)
    return calls


def spy(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[dict[str, Any]]:
    original = getattr(owner, name)
    calls: list[dict[str, Any]] = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return calls


def api_clone(grant: ConsentGrant, reference: Path, cache: Path, **options: Any) -> DashScopeCloneTTS:
    """The DashScope engine's cloned voice (what its CloneSpec.build calls)."""
    synth = api_clone_synthesizer(grant, reference, REF_TEXT, cache, **options)
    assert isinstance(synth, DashScopeCloneTTS)
    return synth


def job_config(ledger: Path, tmp_path: Path, **values: Any) -> DubConfig:
    """A cloning job's config (the video is never read by these tests)."""
    base: dict[str, Any] = {
        "video": tmp_path / "video.mp4", "langs": ["ja", "en"], "tts": API, "clone": "alice",
        "consent_dir": ledger, "clone_use": USE, "cache_dir": tmp_path / "cache", "out": tmp_path / "job",
        "retry_base_delay_s": 0.0, "source_lang": "en",
    }  # fmt: skip
    return DubConfig(**{**base, **values})


def events(ledger: Path, name: str) -> list[dict[str, Any]]:
    return [e for e in read_audit(ledger) if e["event"] == name]


def assert_no_script_text(ledger: Path) -> None:
    raw = (ledger / AUDIT_FILE).read_text(encoding="utf-8")
    for text in [*LINES, REF_TEXT]:
        assert text not in raw
        assert text.split()[0].lower() not in raw.lower()  # not even a fragment


# -- refusals ---------------------------------------------------------------------------------------------


def _revoke(ledger: Path) -> None:
    revoke_record(ledger, "alice", "asked us to stop", now=datetime(2026, 2, 1, tzinfo=UTC))


def _change_document(ledger: Path) -> None:
    (ledger / "docs" / "alice-consent.pdf").write_bytes(b"%PDF-1.4 a different document")


def _malformed_json(ledger: Path) -> None:
    (ledger / "alice.json").write_text('{"speaker_id": "alice", ')


def _malformed_fields(ledger: Path) -> None:
    data = json.loads((ledger / "alice.json").read_text())
    data["permitted_languages"] = ["xx"]
    (ledger / "alice.json").write_text(json.dumps(data))


def _nothing(ledger: Path) -> None:
    pass


REFUSALS: list[tuple[str, Callable[[Path], None], str, list[str], str, datetime | None, str]] = [
    ("no record", _nothing, "bob", ["ja"], USE, None, r"no consent record for speaker 'bob'"),
    ("bad speaker id", _nothing, "../alice", ["ja"], USE, None, r"invalid speaker id"),
    ("expired", _nothing, "alice", ["ja"], USE, datetime(2100, 1, 1, tzinfo=UTC), r"expired on 2099-01-01"),
    ("not yet", _nothing, "alice", ["ja"], USE, datetime(2024, 6, 1, tzinfo=UTC), r"not in force before"),
    ("revoked", _revoke, "alice", ["ja"], USE, None, r"revoked on 2026-02-01 .*\(asked us to stop\)"),
    ("language", _nothing, "alice", ["ja", "ko", "fr"], USE, None, r"not cover Korean \(ko\), French \(fr\)"),
    ("use", _nothing, "alice", ["ja"], "Advertising", None, r"does not cover the use 'Advertising'"),
    ("document", _change_document, "alice", ["ja"], USE, None, r"does not match its recorded sha256"),
    (
        "malformed json",
        _malformed_json,
        "alice",
        ["ja"],
        USE,
        None,
        r"alice.json differs from ledger.chain entry 1 \(edited outside the ledger\)",
    ),
    ("edited record", _malformed_fields, "alice", ["ja"], USE, None, r"alice.json differs from ledger.chain"),
]


@pytest.mark.parametrize(
    ("mutate", "speaker", "langs", "use", "now", "reason"),
    [case[1:] for case in REFUSALS],
    ids=[case[0] for case in REFUSALS],
)
def test_every_refusal_names_its_reason_and_calls_no_engine(
    ledger: Path,
    reference: Path,
    tmp_path: Path,
    dashscope_server: LoopbackDashScope,
    engine_calls: dict[str, int],
    mutate: Callable[[Path], None],
    speaker: str,
    langs: list[str],
    use: str,
    now: datetime | None,
    reason: str,
) -> None:
    mutate(ledger)
    cache = tmp_path / "cache"
    audit_before = len(read_audit(ledger))
    for engine in (LOCAL, API):  # check, then build the cloned voice through the engine's CloneSpec
        config = job_config(ledger, tmp_path, tts=engine, tts_local_model="/nonexistent/base")
        with pytest.raises(ConsentError, match=reason) as refused:
            grant = check_consent(ledger, speaker, langs, use, now=now)
            clone_spec(engine).build(grant, reference, REF_TEXT, config, True, True)
        assert refused.value.exit_code == 2 and "\n" not in str(refused.value)
    assert dashscope_server.count() == 0
    assert engine_calls == {"init": 0, "load": 0}
    assert not (cache / "voices").exists() and not (cache / "voice_prompts").exists()
    assert len(read_audit(ledger)) == audit_before  # nothing was created or used


def test_use_matching_ignores_case_and_spacing_and_languages_may_be_language_objects(ledger: Path) -> None:
    grant = check_consent(ledger, "alice", [JA, "EN"], "  dubbing   OF channel x ")
    assert grant.use == USE and grant.languages == ("ja", "en")
    assert grant.document_present and grant.document_status == "verified"
    assert grant.record_hash == load_record(ledger, "alice").record_hash()
    with pytest.raises(ConsentError, match="does not cover the use"):
        check_consent(ledger, "alice", ["ja"], "Dubbing of channel XY")


def test_the_record_hash_is_canonical_and_changes_with_the_record(ledger: Path) -> None:
    record = load_record(ledger, "alice")
    data = json.loads((ledger / "alice.json").read_text())
    (ledger / "alice.json").write_text(json.dumps(dict(reversed(list(data.items()))), indent=7))
    assert load_record(ledger, "alice").record_hash() == record.record_hash()  # layout does not matter
    assert record.record_hash() == ConsentRecord.model_validate(data).record_hash()
    changed = record.model_copy(update={"permitted_uses": [USE, "Trailers"]})
    assert changed.record_hash() != record.record_hash()


def test_a_missing_document_is_allowed_but_noted(
    ledger: Path, reference: Path, tmp_path: Path, dashscope_server: LoopbackDashScope
) -> None:
    (ledger / "docs" / "alice-consent.pdf").unlink()
    grant = check_consent(ledger, "alice", ["ja"], USE)
    assert not grant.document_present and grant.document_status == "missing"
    api_clone(grant, reference, tmp_path / "cache", retry=NO_WAIT)
    (created,) = events(ledger, "clone_created")
    assert created["document_status"] == "missing"


def test_a_grant_stops_working_once_its_record_is_revoked_or_changed(
    ledger: Path, reference: Path, tmp_path: Path, dashscope_server: LoopbackDashScope
) -> None:
    grant = check_consent(ledger, "alice", ["ja"], USE)
    add_record(
        ledger, speaker_id="alice", speaker_name="Alice Example", granted_by="Alice Example",
        document=ledger / "docs" / "alice-consent.pdf", permitted_languages=["ja"], permitted_uses=[USE],
        granted_at=GRANTED, expires_at=EXPIRES, replace=True,
    )  # fmt: skip
    with pytest.raises(ConsentError, match="changed since it was checked"):
        api_clone(grant, reference, tmp_path / "cache")
    fresh = check_consent(ledger, "alice", ["ja"], USE)
    _revoke(ledger)
    with pytest.raises(ConsentError, match="revoked"):
        audit_clone_synthesis(fresh, job_id="job", language="ja", line_count=3, engine=API)
    assert dashscope_server.count() == 0
    assert [e["event"] for e in read_audit(ledger)] == [
        "consent_granted",
        "consent_replaced",
        "consent_revoked",
    ]


# -- local route ------------------------------------------------------------------------------------------


def test_local_route_computes_one_prompt_for_every_line_and_language_and_revocation_deletes_it(
    ledger: Path,
    reference: Path,
    tmp_path: Path,
    tiny_qwen_tts: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    engine_calls: dict[str, int],
) -> None:
    qwen_tts = qlt._import_qwen_tts()
    created = spy(monkeypatch, qwen_tts.Qwen3TTSModel, "create_voice_clone_prompt")
    monkeypatch.setattr(qlt, "_PROMPT_MEMO", {})
    cache, model = tmp_path / "cache", str(tiny_qwen_tts["base"])
    grant = check_consent(ledger, "alice", ["ja", "en"], USE)

    prompt_ids = set()
    for language in (JA, EN):  # one synthesizer per language, as the per-language synthesis tasks build them
        tts = local_clone_synthesizer(grant, reference, REF_TEXT, model, cache, **TINY_OPTIONS)
        assert isinstance(tts, QwenLocalTTS) and tts.mode == "base"
        assert tts.identity()["clone"] == {"speaker_id": "alice", "reference_sha256": sha256_file(reference)}
        audit_clone_synthesis(
            grant, job_id="job-1", language=language.code, line_count=len(LINES), engine=LOCAL
        )
        clips = tts.synthesize_batch(LINES, language)
        assert len(clips) == len(LINES) and all(c.audio.size > 0 for c in clips)
        prompt_ids.add(tts.identity()["voice_prompt"])
    assert len(created) == 1 and created[0]["x_vector_only_mode"] is False
    assert created[0]["ref_text"] == REF_TEXT
    (prompt_id,) = prompt_ids
    files = list(clone_prompt_dir(cache, "alice").iterdir())
    assert len(files) == 1 and files[0].name.endswith(f"-{prompt_id}.pt")

    # Another process: no memo, model cache cleared: the prompt comes from disk (keyed by the audio's hash).
    monkeypatch.setattr(qlt, "_PROMPT_MEMO", {})
    qlt.load_model.cache_clear()
    loads = engine_calls["load"]
    again = local_clone_synthesizer(grant, reference, REF_TEXT, model, cache, **TINY_OPTIONS)
    assert len(created) == 1 and engine_calls["load"] == loads  # read back without loading the model
    assert again.identity()["voice_prompt"] == prompt_id

    # No transcript: speaker embedding only (x-vector mode), a second prompt.
    xvec = local_clone_synthesizer(grant, reference, "  ", model, cache, **TINY_OPTIONS)
    assert len(created) == 2 and created[1]["x_vector_only_mode"] is True
    assert xvec.voice_prompt is not None and xvec.voice_prompt.x_vector_only

    made = events(ledger, "clone_created")
    assert [(e["route"], e["prompt_id"]) for e in made] == [
        (LOCAL, prompt_id),
        (LOCAL, xvec.voice_prompt.id),
    ]
    assert made[0]["reference_sha256"] == sha256_file(reference)
    assert made[0]["consent_record_hash"] == grant.record_hash and made[0]["speaker_id"] == "alice"
    used = events(ledger, "clone_synthesis")
    assert [(e["language"], e["line_count"], e["job_id"], e["route"]) for e in used] == [
        ("ja", 4, "job-1", LOCAL),
        ("en", 4, "job-1", LOCAL),
    ]
    assert_no_script_text(ledger)

    result = revoke_speaker(ledger, "alice", "withdrawn", cache)
    assert result.newly_revoked and result.complete
    assert sorted(result.deleted_prompts) == sorted([prompt_id, xvec.voice_prompt.id])
    assert not clone_prompt_dir(cache, "alice").exists()
    assert not [k for k in qlt._PROMPT_MEMO if k[1] in result.deleted_prompts]
    deleted = events(ledger, "voice_deleted")
    assert {e["prompt_id"] for e in deleted} == set(result.deleted_prompts)
    assert all(e["route"] == LOCAL for e in deleted)

    inits = engine_calls["init"]
    with pytest.raises(ConsentError, match="revoked"):
        local_clone_synthesizer(grant, reference, REF_TEXT, model, cache, **TINY_OPTIONS)
    assert engine_calls["init"] == inits


# -- API route --------------------------------------------------------------------------------------------


def test_api_route_enrolls_once_for_all_lines_and_two_languages_and_synthesises_with_the_vc_model(
    ledger: Path, reference: Path, tmp_path: Path, dashscope_server: LoopbackDashScope
) -> None:
    cache = tmp_path / "cache"
    grant = check_consent(ledger, "alice", ["ja", "en"], USE)

    def job(job_id: str) -> set[str]:
        voices = set()
        for language in (JA, EN):
            synth = api_clone(grant, reference, cache, reference_language="en", retry=NO_WAIT)
            audit_clone_synthesis(
                grant, job_id=job_id, language=language.code, line_count=len(LINES), engine=API
            )
            for line in LINES:
                clip = synth.synthesize(line, language)
                assert clip.sample_rate == 24_000 and clip.audio.size > 0
            voices.add(synth.voice)
            assert synth.identity()["model"] == VC_MODEL
            assert synth.identity()["clone"] == {
                "speaker_id": "alice",
                "reference_sha256": sha256_file(reference),
            }
        return voices

    (voice,) = job("job-1") | job("job-2")  # a second job reuses the cached voice id
    assert dashscope_server.count("voice") == 1
    enrollment = dashscope_server.requests_of("voice")[0]
    assert enrollment.status == 200 and enrollment.path == "/api/v1/services/audio/tts/customization"
    body = enrollment.body
    assert body["model"] == ENROLLMENT_MODEL
    inp = body["input"]
    assert {k: v for k, v in inp.items() if k != "audio"} == {
        "action": "create", "target_model": VC_MODEL, "preferred_name": "alice", "text": REF_TEXT,
        "language": "en",
    }  # fmt: skip
    header, payload = inp["audio"]["data"].split(",", 1)
    assert header == "data:audio/wav;base64" and base64.b64decode(payload) == reference.read_bytes()
    assert list(dashscope_server.enrolled_voices()) == [voice]

    tts = dashscope_server.requests_of("tts")
    assert len(tts) == 2 * 2 * len(LINES)
    assert {(r.body["model"], r.body["input"]["voice"]) for r in tts} == {(VC_MODEL, voice)}
    assert [r.body["input"]["language_type"] for r in tts[: 2 * len(LINES)]] == ["Japanese"] * 4 + [
        "English"
    ] * 4

    (entry,) = VoiceIdCache(cache, "alice").entries()
    assert entry["voice"] == voice and entry["target_model"] == VC_MODEL and entry["region"] == "intl"
    assert entry["reference_sha256"] == sha256_file(reference)
    assert entry["consent_record_hash"] == grant.record_hash

    (made,) = events(ledger, "clone_created")
    assert (made["route"], made["voice_id"], made["reference_sha256"], made["consent_record_hash"]) == (
        API, voice, sha256_file(reference), grant.record_hash,
    )  # fmt: skip
    used = events(ledger, "clone_synthesis")
    assert [(e["job_id"], e["language"], e["line_count"]) for e in used] == [
        ("job-1", "ja", 4), ("job-1", "en", 4), ("job-2", "ja", 4), ("job-2", "en", 4),
    ]  # fmt: skip
    assert_no_script_text(ledger)


def test_concurrent_language_tasks_enroll_one_voice(
    ledger: Path, reference: Path, tmp_path: Path, dashscope_server: LoopbackDashScope
) -> None:
    dashscope_server.delay("voice", 0.2)
    grant = check_consent(ledger, "alice", ["ja", "en"], USE)
    voices: list[str] = []

    def build() -> None:
        voices.append(api_clone(grant, reference, tmp_path / "cache").voice)

    threads = [threading.Thread(target=build) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(voices)) == 1 and len(voices) == 4
    assert dashscope_server.count("voice") == 1 and len(events(ledger, "clone_created")) == 1


def test_enrollment_retries_transient_failures_only(
    reference: Path, tmp_path: Path, dashscope_server: LoopbackDashScope
) -> None:
    client = VoiceEnrollment(retry=NO_WAIT)
    dashscope_server.fail_next("voice", 503)
    voice = client.create(reference, preferred_name="alice")
    assert [r.status for r in dashscope_server.requests_of("voice")] == [503, 200]
    assert list(dashscope_server.enrolled_voices()) == [voice]

    short = tmp_path / "short.wav"
    sf.write(short, speechlike(2.0, 24_000), 24_000, subtype="PCM_16")
    dashscope_server.reset()
    with pytest.raises(UpstreamError, match="voice enrollment failed: HTTP 400 InvalidParameter"):
        client.create(short, preferred_name="alice")
    assert dashscope_server.count("voice") == 1  # a 400 is not retried
    assert client.list() == [
        {"voice": voice, "target_model": VC_MODEL, "gmt_create": client.list()[0]["gmt_create"]}
    ]
    assert client.delete(voice) is True and client.delete(voice) is False  # gone: 404 is "already deleted"


def test_revocation_deletes_the_enrolled_voice_and_purges_its_clips(
    ledger: Path, reference: Path, tmp_path: Path, dashscope_server: LoopbackDashScope
) -> None:
    from core.clip_cache import ClipCache

    cache = tmp_path / "cache"
    grant = check_consent(ledger, "alice", ["ja"], USE)
    synth = api_clone(grant, reference, cache, retry=NO_WAIT)
    clip = synth.synthesize("Hello.", JA)
    clips = ClipCache(cache)
    clips.put("aa" + "0" * 62, clip.audio, clip.sample_rate, {CLONE_SPEAKER: "alice"})
    clips.put("bb" + "0" * 62, clip.audio, clip.sample_rate, {CLONE_SPEAKER: "bob"})

    result = revoke_speaker(ledger, "alice", "withdrawn", cache, retry=NO_WAIT)
    assert result.complete and result.deleted_voices == [synth.voice] and result.purged_clips == 1
    assert clips.get("aa" + "0" * 62) is None and clips.get("bb" + "0" * 62) is not None
    deletions = [r for r in dashscope_server.requests_of("voice") if r.body["input"]["action"] == "delete"]
    assert [(r.status, r.body["input"]["voice"]) for r in deletions] == [(200, synth.voice)]
    assert dashscope_server.enrolled_voices() == {}
    assert VoiceIdCache(cache, "alice").entries() == [] and not (cache / "voices" / "alice.json").exists()
    (deleted,) = events(ledger, "voice_deleted")
    assert (deleted["route"], deleted["voice_id"], deleted["status"]) == (API, synth.voice, "deleted")
    assert load_record(ledger, "alice").revoked
    with pytest.raises(UpstreamError, match="HTTP 400"):  # the service no longer knows the voice
        synth.synthesize("Hello again.", JA)


def test_revocation_without_a_key_revokes_and_names_the_voices_left_to_delete(
    ledger: Path,
    reference: Path,
    tmp_path: Path,
    dashscope_server: LoopbackDashScope,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cache = tmp_path / "cache"
    grant = check_consent(ledger, "alice", ["ja"], USE)
    voice = api_clone(grant, reference, cache).voice

    monkeypatch.delenv("DASHSCOPE_API_KEY")
    code = consent_cli(
        ["revoke", "alice", "--ledger", str(ledger), "--reason", "withdrawn", "--cache-dir", str(cache)]
    )
    out, err = capsys.readouterr()
    assert code == 2 and out.splitlines()[0] == "consent revoked: alice"
    assert err.count("\n") == 1 and err.startswith(
        "error: consent of 'alice' is revoked, but 2 enrolled voice(s)"
    )  # the recorded one, and those the account's listing could not be searched for
    assert voice in err and "DASHSCOPE_API_KEY is not set" in err
    result = revoke_speaker(ledger, "alice", "withdrawn", cache)
    assert load_record(ledger, "alice").revoked
    assert result.remaining_voices == [voice, "(voices named alice in intl)"]
    with pytest.raises(InputError, match=f"remain to delete: {voice}, .*DASHSCOPE_API_KEY is not set"):
        raise_if_incomplete(result)
    assert list(dashscope_server.enrolled_voices()) == [voice]
    assert [e["voice"] for e in VoiceIdCache(cache, "alice").entries()] == [voice]  # kept for the next try

    monkeypatch.setenv("DASHSCOPE_API_KEY", dashscope_server.api_key)
    second = revoke_speaker(ledger, "alice", "ignored: already revoked", cache)
    assert not second.newly_revoked and second.deleted_voices == [voice] and second.complete
    assert dashscope_server.enrolled_voices() == {}
    assert load_record(ledger, "alice").revoked_reason == "withdrawn"
    assert len(events(ledger, "consent_revoked")) == 1


def test_voices_command_lists_the_accounts_enrolled_voices(
    reference: Path, dashscope_server: LoopbackDashScope, capsys: pytest.CaptureFixture[str]
) -> None:
    voice = VoiceEnrollment().create(reference, preferred_name="alice")
    code, out, err = cli(capsys, "voices")
    assert code == 0 and err == "" and out.split()[:2] == [voice, VC_MODEL]


# -- audit log --------------------------------------------------------------------------------------------


def test_audit_log_refuses_fields_that_could_carry_text_and_unknown_events(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not allowed: text"):
        append_audit(tmp_path, {"event": "clone_synthesis", "speaker_id": "alice", "text": LINES[0]})
    with pytest.raises(ValueError, match="unknown audit event"):
        append_audit(tmp_path, {"event": "lines_spoken"})
    with pytest.raises(ValueError, match="plain values"):
        append_audit(tmp_path, {"event": "clone_synthesis", "detail": {"lines": LINES}})
    assert read_audit(tmp_path) == []


def test_audit_log_appends_whole_lines_from_concurrent_writers(tmp_path: Path) -> None:
    (tmp_path / AUDIT_FILE).write_bytes(b'{"event": "clone_synthesis", "job_id": "cut by a cra')  # crash

    def writer(n: int) -> None:
        for i in range(25):
            append_audit(tmp_path, {"event": "clone_synthesis", "job_id": f"w{n}", "line_count": i})

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    code = (
        "import sys; from cloning.ledger import append_audit\n"
        "for i in range(25): append_audit(sys.argv[1], {'event': 'clone_synthesis', 'job_id': 'proc', "
        "'line_count': i})"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, check=True)
    for thread in threads:
        thread.join()

    entries = read_audit(tmp_path)  # the partial line is cut off, every entry is whole and chained
    assert len(entries) == 7 * 25
    for job in [*(f"w{n}" for n in range(6)), "proc"]:
        assert [e["line_count"] for e in entries if e["job_id"] == job] == list(range(25))
    assert all(e["time"].endswith("+00:00") and e["actor"] for e in entries)
    raw = (tmp_path / AUDIT_FILE).read_bytes()
    assert raw.endswith(b"\n") and raw.count(b"\n") == 7 * 25 and b"cut by a cra" not in raw
    assert [e["seq"] for e in entries] == list(range(1, 7 * 25 + 1))


# -- CLI --------------------------------------------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = consent_cli(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_consent_cli_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ledger, cache = tmp_path / "ledger", tmp_path / "cache"
    document = tmp_path / "signed" / "bob.pdf"
    document.parent.mkdir()
    document.write_bytes(b"signed by Bob")
    add = ["add", "bob", "--ledger", str(ledger), "--name", "Bob Example", "--granted-by", "Bob Example",
           "--document", str(document), "--langs", "ja, de", "--use", "Dubbing of channel X",
           "--use", "Trailers", "--granted-at", "2025-01-01", "--expires", "2099-12-31T12:00:00"]  # fmt: skip
    code, out, err = cli(capsys, *add)
    assert code == 0 and out.startswith("consent recorded: bob (") and err == ""

    code, out, err = cli(capsys, *add)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err == "error: a consent record for speaker 'bob' already exists; use --replace to supersede it\n"

    code, out, _ = cli(capsys, "list", "--ledger", str(ledger))
    assert code == 0 and out.split()[:6] == [
        "bob",
        "active",
        "langs=ja,de",
        "expires=2099-12-31",
        "no-print",
        "Bob",
    ]

    code, out, _ = cli(capsys, "show", "bob", "--ledger", str(ledger))
    shown = json.loads(out)
    assert code == 0 and shown["status"] == "active" and shown["document"]["status"] == "verified"
    assert shown["record"]["document"] == str(document.resolve())  # outside the ledger: absolute
    assert shown["record"]["expires_at"] == "2099-12-31T12:00:00Z"
    assert shown["record_sha256"] == load_record(ledger, "bob").record_hash()

    code, out, _ = cli(capsys, "check", "bob", "--ledger", str(ledger), "--langs", "de", "--use", "trailers")
    assert code == 0 and out.startswith("consent covers de for 'Trailers'")
    code, out, err = cli(
        capsys, "check", "bob", "--ledger", str(ledger), "--langs", "fr", "--use", "Trailers"
    )
    assert code == 2 and err.strip().startswith("error: consent of speaker 'bob' does not cover French (fr)")

    code, out, err = cli(capsys, "revoke", "bob", "--ledger", str(ledger), "--reason", "moved on",
                         "--cache-dir", str(cache))  # fmt: skip
    assert code == 0 and out.splitlines() == ["consent revoked: bob", "deleted local clone prompts: 0"]
    code, out, _ = cli(capsys, "list", "--ledger", str(ledger))
    assert out.split()[:2] == ["bob", "revoked"]
    code, out, _ = cli(capsys, "show", "bob", "--ledger", str(ledger))
    assert json.loads(out)["record"]["revoked_reason"] == "moved on"
    code, _, err = cli(capsys, "check", "bob", "--ledger", str(ledger), "--langs", "de", "--use", "Trailers")
    assert code == 2 and "was revoked on" in err and "(moved on)" in err and err.count("\n") == 1

    assert [e["event"] for e in read_audit(ledger)] == ["consent_granted", "consent_revoked"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["add", "bob", "--ledger", "L", "--name", "B", "--granted-by", "B", "--document", "nope.pdf",
          "--langs", "ja", "--use", "x"], "signed consent document 'nope.pdf' does not exist"),
        (["show", "nobody", "--ledger", "."], "no consent record for speaker 'nobody'"),
        (["list", "--ledger", "does-not-exist"], "consent ledger folder 'does-not-exist' does not exist"),
        (["add", "bob", "--ledger", "L"], "the following arguments are required"),
        (["frobnicate"], "invalid choice"),
        (["add", "b", "--ledger", "L", "--name", "B", "--granted-by", "B", "--document", "d", "--langs", "ja",
          "--use", "x", "--expires", "next tuesday"], "is not an ISO 8601 date"),
    ],
)  # fmt: skip
def test_consent_cli_errors_are_one_line_with_exit_2(
    argv: list[str], needle: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "cloning.cli", *argv],
        capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert needle in lines[0] and "Traceback" not in proc.stderr


def test_add_with_a_document_inside_the_ledger_stores_a_relative_path(ledger: Path) -> None:
    record = load_record(ledger, "alice")
    assert record.document == "docs/alice-consent.pdf"
    assert record.document_sha256 == sha256_file(ledger / "docs" / "alice-consent.pdf")
