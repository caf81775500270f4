"""Nothing paid twice after a crash: every DashScope answer is journaled (fsync'd) before it is used, and a
resumed process uses it instead of asking (and paying) again. The process's death is simulated at the
worst moment: right after the answer was written down, before anything else was done with it; the
resumed side is a fresh journal object reading the file, as a new process would."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pytest

import core.journal as journal_module
from core.journal import AnswerJournal
from core.languages import get_language
from core.retry import RetryPolicy
from models.dashscope_tts import DashScopeTTS
from models.qwen_mt import QwenMTTranslator
from tests.loopback_dashscope import LoopbackDashScope

FAST = RetryPolicy(max_attempts=4, base_delay_s=0.01, max_delay_s=0.05)
TEXT = "The boat left the harbour at dawn."


class Died(BaseException):
    """The process ends here (a BaseException: no retry or handler of ours catches it)."""


@pytest.fixture
def die_after_journaling(monkeypatch: pytest.MonkeyPatch):
    """Make the next journal write the last thing the 'process' does."""
    real = AnswerJournal.record

    def record_then_die(self, key, kind, **fields):
        real(self, key, kind, **fields)
        monkeypatch.setattr(AnswerJournal, "record", real)
        raise Died

    monkeypatch.setattr(AnswerJournal, "record", record_then_die)


def new_process() -> None:
    """Forget the in-memory journals: the next lookup reads the file, as a restarted job does."""
    journal_module._JOURNALS.clear()


@pytest.mark.parametrize("stream", [False, True], ids=["url", "stream"])
def test_an_answer_received_before_a_crash_is_not_paid_again(
    dashscope_server: LoopbackDashScope, tmp_path: Path, die_after_journaling, stream: bool
) -> None:
    tts = DashScopeTTS(retry=FAST, stream=stream, journal=tmp_path / "journal")
    with pytest.raises(Died):
        tts.synthesize(TEXT, get_language("en"))
    assert dashscope_server.count("tts") == 1
    assert dashscope_server.count("download") == 0  # died before the URL was even fetched

    new_process()
    clip = DashScopeTTS(retry=FAST, stream=stream, journal=tmp_path / "journal").synthesize(
        TEXT, get_language("en")
    )
    assert dashscope_server.count("tts") == 1  # the service's own count: paid once
    assert clip.billed_characters == dashscope_server.billed_characters_total
    reference = DashScopeTTS(retry=FAST, stream=stream).synthesize(TEXT, get_language("en"))  # no journal
    assert dashscope_server.count("tts") == 2
    np.testing.assert_allclose(clip.audio, reference.audio, atol=1e-4)


def test_an_expired_result_url_is_requested_again_and_the_log_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, die_after_journaling, caplog: pytest.LogCaptureFixture
) -> None:
    with LoopbackDashScope(url_ttl_s=1) as server:
        monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", server.base_http_api_url)
        monkeypatch.setenv("DASHSCOPE_API_KEY", server.api_key)
        with pytest.raises(Died):
            DashScopeTTS(retry=FAST, journal=tmp_path / "j").synthesize(TEXT, get_language("en"))
        time.sleep(1.5)  # the URL's expires_at has passed
        new_process()
        with caplog.at_level(logging.WARNING, logger="models.dashscope_tts"):
            clip = DashScopeTTS(retry=FAST, journal=tmp_path / "j").synthesize(TEXT, get_language("en"))
        assert clip.audio.size > 0
        assert server.count("tts") == 2  # an expired answer cannot be fetched: paid again, and said
        assert any("expired" in r.getMessage() and "again" in r.getMessage() for r in caplog.records)


def test_a_translation_received_before_a_crash_is_not_paid_again(
    dashscope_server: LoopbackDashScope, tmp_path: Path, die_after_journaling
) -> None:
    en, ja = get_language("en"), get_language("ja")
    with pytest.raises(Died):
        QwenMTTranslator(retry=FAST, journal=tmp_path / "j").translate(TEXT, en, ja)
    new_process()
    text = QwenMTTranslator(retry=FAST, journal=tmp_path / "j").translate(TEXT, en, ja)
    assert dashscope_server.count("mt") == 1
    assert text == QwenMTTranslator(retry=FAST).translate(TEXT, en, ja)


def test_a_line_torn_by_a_crash_is_ignored(tmp_path: Path) -> None:
    journal = AnswerJournal(tmp_path)
    journal.record("a", "text", text="one")
    with (tmp_path / "answers.jsonl").open("ab") as f:
        f.write(b'{"key":"b","kind":"text","te')  # the process died mid-write
    fresh = AnswerJournal(tmp_path)
    assert fresh.lookup("a")["text"] == "one"
    assert fresh.lookup("b") is None
    fresh.record("c", "text", text="three")  # appends after the torn line still parse
    assert AnswerJournal(tmp_path).lookup("c")["text"] == "three"


def test_a_rejected_translation_is_asked_again_not_handed_back(
    dashscope_server: LoopbackDashScope, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply the checks reject (a refusal, the source echoed) fails the job with "re-run to try again":
    the journal must not hand the same reply back to that re-run."""
    import tasks.translate as translate_stage
    from core.errors import UpstreamError
    from tasks.segment import Line
    from tasks.translate import TranslationCache, translate_lines

    en, ja = get_language("en"), get_language("ja")
    lines = [Line(0, 0.0, 2.0, TEXT)]
    mt = QwenMTTranslator(retry=FAST, journal=tmp_path / "j")
    with monkeypatch.context() as patched, pytest.raises(UpstreamError, match="not usable"):
        patched.setattr(translate_stage, "refusal_reason", lambda *a: "an assistant's refusal")
        translate_lines(lines, en, ja, mt, TranslationCache(tmp_path / "c"), 1)
    new_process()
    again = QwenMTTranslator(retry=FAST, journal=tmp_path / "j")
    translated, stats = translate_lines(lines, en, ja, again, TranslationCache(tmp_path / "c"), 1)
    assert dashscope_server.count("mt") == 2 and stats["calls"] == 1
    assert translated[0].text


def test_audio_that_is_no_clip_is_asked_again_not_reused(
    dashscope_server: LoopbackDashScope, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import models.dashscope_tts as tts_module
    from core.errors import UpstreamError

    real = tts_module.decode_verified_wav
    calls = {"n": 0}

    def first_download_is_empty(data: bytes, rate: int) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 1:
            raise UpstreamError("downloaded audio is empty", code="BadAudio", transient=True)
        return real(data, rate)

    monkeypatch.setattr(tts_module, "decode_verified_wav", first_download_is_empty)
    clip = DashScopeTTS(retry=FAST, journal=tmp_path / "j").synthesize(TEXT, get_language("en"))
    assert clip.audio.size > 0
    assert dashscope_server.count("tts") == 2  # the bad answer was not served back to the retry


def test_an_answer_handed_on_is_retired_the_journal_is_no_second_cache(
    dashscope_server: LoopbackDashScope, tmp_path: Path
) -> None:
    DashScopeTTS(retry=FAST, journal=tmp_path / "j").synthesize(TEXT, get_language("en"))
    new_process()
    DashScopeTTS(retry=FAST, journal=tmp_path / "j").synthesize(TEXT, get_language("en"))
    assert dashscope_server.count("tts") == 2  # asked again: the clip cache, not the journal, reuses clips
