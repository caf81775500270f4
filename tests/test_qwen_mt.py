"""Qwen-MT through the real dashscope SDK against the loopback server."""

from __future__ import annotations

import pytest

from core.errors import UpstreamError
from core.languages import get_language
from core.retry import RetryPolicy
from models.qwen_mt import QwenMTTranslator
from tests.loopback_dashscope import LoopbackDashScope

FAST = RetryPolicy(max_attempts=5, base_delay_s=0.01, max_delay_s=0.05)


def test_request_shape_is_what_qwen_mt_expects(dashscope_server: LoopbackDashScope) -> None:
    mt = QwenMTTranslator(
        retry=FAST, terms={"ja": {"lighthouse": "灯台"}}, domain="Travel documentary narration."
    )
    out = mt.translate("The old lighthouse turns on.", get_language("en"), get_language("ja"))
    assert "灯台" in out
    (req,) = dashscope_server.requests_of("mt")
    assert req.body["model"] == "qwen-mt-flash"
    assert req.body["input"]["messages"] == [{"role": "user", "content": "The old lighthouse turns on."}]
    options = req.body["parameters"]["translation_options"]
    assert options["source_lang"] == "English" and options["target_lang"] == "Japanese"
    assert options["terms"] == [{"source": "lighthouse", "target": "灯台"}]
    assert options["domains"] == "Travel documentary narration."


def test_auto_source_language(dashscope_server: LoopbackDashScope) -> None:
    QwenMTTranslator(retry=FAST).translate("Bonjour.", None, get_language("de"))
    (req,) = dashscope_server.requests_of("mt")
    assert req.body["parameters"]["translation_options"]["source_lang"] == "auto"


def test_429_and_500_are_retried(dashscope_server: LoopbackDashScope) -> None:
    dashscope_server.fail_next("mt", 429, "Throttling.RateQuota", times=1)
    dashscope_server.fail_next("mt", 503, "ServiceUnavailable", times=1)
    assert QwenMTTranslator(retry=FAST).translate("Hello.", None, get_language("ko"))
    assert dashscope_server.count("mt") == 3


def test_400_is_not_retried(dashscope_server: LoopbackDashScope) -> None:
    dashscope_server.fail_next("mt", 400, "DataInspectionFailed", times=1)
    with pytest.raises(UpstreamError, match="HTTP 400 DataInspectionFailed"):
        QwenMTTranslator(retry=FAST).translate("Hello.", None, get_language("ko"))
    assert dashscope_server.count("mt") == 1


def test_retries_flag_sets_the_attempts_per_request(dashscope_server: LoopbackDashScope, tmp_path) -> None:
    """--retries N is the whole budget of attempts: with 1, one 503 fails the call after one request."""
    from flows.cli import build_parser, config_from_args
    from tasks.translate import translator_for

    args = build_parser().parse_args(
        ["media_samples/sample.mp4", "--langs", "ja", "--retries", "1", "--out", str(tmp_path)]
    )
    config = config_from_args(args)
    assert RetryPolicy.of(config).max_attempts == 1
    dashscope_server.fail_next("mt", 503, "ServiceUnavailable", times=1)
    with pytest.raises(UpstreamError, match="HTTP 503"):
        translator_for(config).translate("Hello.", None, get_language("ja"))
    assert dashscope_server.count("mt") == 1


def test_the_line_budget_reaches_qwen_mt_in_domains(dashscope_server: LoopbackDashScope) -> None:
    """Qwen-MT has no length field: the budget travels as one English sentence after the style hint."""
    mt = QwenMTTranslator(retry=FAST, domain="Travel documentary narration.")
    mt.translate("The old lighthouse turns on.", get_language("en"), get_language("de"), max_chars=37)
    (req,) = dashscope_server.requests_of("mt")
    domains = req.body["parameters"]["translation_options"]["domains"]
    assert domains.startswith("Travel documentary narration. ")
    assert "within 37 characters" in domains
