"""Glossary files: parsed per language, enforced through the engines, misses detected."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import DubError
from text.glossary import load_glossary, missing_terms, terms_for


def test_csv_and_json_glossaries(tmp_path: Path) -> None:
    csv_path = tmp_path / "g.csv"
    csv_path.write_text("source,target,language\nlighthouse,灯台,ja\nQwen,Qwen,\n")
    glossary = load_glossary(csv_path)
    assert terms_for(glossary, "ja") == {"Qwen": "Qwen", "lighthouse": "灯台"}
    assert terms_for(glossary, "ko") == {"Qwen": "Qwen"}
    json_path = tmp_path / "g.json"
    json_path.write_text('{"ja": {"lighthouse": "灯台"}, "*": {"Qwen": "Qwen"}}')
    assert load_glossary(json_path) == glossary


@pytest.mark.parametrize(
    ("name", "body", "message"),
    [
        ("g.csv", "source,target\nlighthouse,\n", "row 2 needs"),
        ("g.json", '{"ja": ["lighthouse"]}', "must map source terms"),
        ("g.json", "{", "not valid JSON"),
        ("g.csv", "source,target,language\na,b,xx\n", "unknown language"),
    ],
)
def test_bad_glossaries_are_one_clear_error(tmp_path: Path, name: str, body: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(body)
    with pytest.raises(DubError, match=message) as err:
        load_glossary(path)
    assert err.value.exit_code == 2  # a user error: one line, exit 2 (InputError or ConfigError)
    assert "\n" not in str(err.value)


def test_missing_terms_are_found() -> None:
    terms = {"lighthouse": "灯台"}
    assert missing_terms("The old lighthouse turns on.", "古い灯台が点く。", terms) == []
    assert missing_terms("The old Lighthouse turns on.", "古い光の塔が点く。", terms) == ["lighthouse"]
    assert missing_terms("No term here.", "ここには無い。", terms) == []


def test_glossary_reaches_qwen_mt_through_the_stage(dashscope_server, tmp_path: Path) -> None:
    from core.languages import get_language
    from core.retry import RetryPolicy
    from models.qwen_mt import QwenMTTranslator
    from tasks.segment import Line
    from tasks.translate import TranslationCache, translate_lines

    translator = QwenMTTranslator(
        model="qwen-mt-flash", rpm=60, concurrency=2, retry=RetryPolicy(base_delay_s=0.01),
        terms={"ja": {"lighthouse": "灯台"}},
    )  # fmt: skip
    lines = [Line(0, 0.0, 2.0, "The old lighthouse turns on.")]
    out, _ = translate_lines(
        lines, get_language("en"), get_language("ja"), translator, TranslationCache(tmp_path), 2
    )
    (request,) = dashscope_server.requests_of("mt")
    assert request.body["parameters"]["translation_options"]["terms"] == [
        {"source": "lighthouse", "target": "灯台"}
    ]
    assert "灯台" in out[0].text
