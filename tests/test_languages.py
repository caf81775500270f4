"""core/languages.py: the writing facts shared by billing, the local TTS length guard and text checks."""

from __future__ import annotations

import pytest

from core.languages import LANGUAGES, Language, get_language, is_double_width, is_wide
from models.billing import billed_characters


@pytest.mark.parametrize("ch", ["漢", "か", "カ", "한", "㐀", "豈", "𠀋"])
def test_wide_characters(ch: str) -> None:
    assert is_wide(ch) and Language.is_wide(ch) and is_double_width(ch)


@pytest.mark.parametrize("ch", ["a", "é", "я", "1", "。", "「", "！", "ｶ", "ㅋ", " "])
def test_not_wide(ch: str) -> None:
    assert not is_wide(ch)


def test_double_width_covers_cjk_punctuation() -> None:
    assert all(is_double_width(ch) for ch in "。「」！、")
    assert not any(is_double_width(ch) for ch in "a.,!ｶ")


def test_billing_counts_wide_characters_twice() -> None:
    assert billed_characters("Hello, 世界!") == 12
    assert billed_characters("こんにちは。") == 11
    assert billed_characters("안녕") == 4


def test_number_separators() -> None:
    assert (get_language("en").decimal_mark, get_language("en").group_marks) == (".", ",")
    assert (get_language("de").decimal_mark, get_language("de").group_marks) == (",", ".")
    assert get_language("fr").group_marks == " \u00a0\u202f."
    assert get_language("ru").group_marks == " \u00a0\u202f"
    assert {lang.decimal_mark for lang in LANGUAGES.values()} == {".", ","}
