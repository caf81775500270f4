"""Numbers, names and units that must survive translation, and replies that are not translations."""

from __future__ import annotations

from decimal import Decimal

import pytest

from text.preservation import (
    Item,
    keep_terms,
    missing_items,
    parse_cjk_number,
    protected_items,
    refusal_reason,
)


def num(surface: str, value: str | None = None) -> Item:
    return Item("number", surface, value if value is not None else surface)


def name(surface: str) -> Item:
    return Item("name", surface, surface)


def unit(surface: str, unit_id: str | None = None) -> Item:
    return Item("unit", surface, unit_id or surface)


# -- what is protected ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "source", "expected"),
    [
        ("I ran 3 km today.", "en", [num("3"), unit("km")]),
        ("1,000 people came in 2024.", "en", [num("1,000", "1000"), num("2024")]),
        ("It rose 3.5% to -5 °C.", "en", [num("3.5"), unit("%"), num("-5"), unit("°C")]),
        ("Das kostet 1.000 Euro bei BMW in München.", "de",
         [num("1.000", "1000"), unit("Euro", "€"), name("BMW")]),
        ("Il a 3,5 % de plus à Paris.", "fr", [num("3,5", "3.5"), unit("%"), name("Paris")]),
        ("Costó $5 y 3 millones.", "es", [unit("$"), num("5"), num("3 millones", "3000000")]),
        ("We met Anna's friend from New York at 10:30.", "en",
         [name("Anna"), name("New York"), num("10:30")]),
        ("Meet me at 5 pm, it's the 3rd time.", "en", [num("5 pm", "17:00"), num("3")]),
        ("GPT-4 and Qwen2.5-7B run on an H200 in 4K.", "en",
         [name("GPT-4"), name("Qwen2.5-7B"), name("H200"), name("4K")]),
        ("Mr. Smith met Dr. Brown on Monday, OK?", "en", [name("Smith"), name("Brown")]),
        ("London is big. I like London and the GPUs.", "en", [name("London"), name("GPU")]),
        ("THIS IS A LOUD LINE ABOUT NASA", "en", []),
        ("我用Qwen3模型，花了15%的时间", "zh", [name("Qwen3"), num("15"), unit("%")]),
        ("GPUを使って3キロ走った", "ja", [name("GPU"), num("3")]),  # キロ: km or kg, so not a unit
        ("彼は１００円を払った", "ja", [num("100"), unit("円", "¥")]),
        ("三キロ走った", "ja", []),  # kanji are not read in a source
        ("Я купил iPhone за 5 000 рублей", "ru", [name("iPhone"), num("5 000", "5000")]),
    ],
)  # fmt: skip
def test_protected_items(text: str, source: str, expected: list[Item]) -> None:
    assert protected_items(text, source) == expected


# -- what a translation may lose ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source_text", "translation", "source", "target", "missing"),
    [
        # en -> ja: digits, kanji and unit words all count; a changed number does not
        ("I ran 3 km today.", "今日は3キロ走った。", "en", "ja", []),
        ("I ran 3 km today.", "今日は三キロメートル走った。", "en", "ja", []),
        ("I ran 3 km today.", "今日は5キロ走った。", "en", "ja", [num("3")]),
        ("It costs 15,000 yen.", "一万五千円です。", "en", "ja", []),
        ("It costs 15,000 yen.", "1万5千円です。", "en", "ja", []),
        ("3 million people", "300万人", "en", "ja", []),
        # separators are the target's
        ("1,000 people came.", "1.000 Menschen kamen.", "en", "de", []),
        ("1,000 people came.", "1,000 Menschen kamen.", "en", "de", []),  # kept as written
        ("1,000 people came.", "1.500 Menschen kamen.", "en", "de", [num("1,000", "1000")]),
        ("It rose 3.5%.", "Il a augmenté de 3,5 %.", "en", "fr", []),
        ("It rose 3.5%.", "Il a augmenté de 3,5.", "en", "fr", [unit("%")]),
        ("It rose 15%.", "Subió un quince por ciento.", "en", "es", []),
        # numbers as words (num2words), with gender and case forms
        ("I have 12 cats.", "Tengo doce gatos.", "en", "es", []),
        ("I have 12 cats.", "Tengo once gatos.", "en", "es", [num("12")]),
        ("I have 21 dogs.", "Ho ventun cani.", "en", "it", []),
        ("I have 21 dogs.", "У меня нет двадцати одной собаки.", "en", "ru", []),
        ("It costs $5.", "Cuesta cinco dólares.", "en", "es", []),
        ("It was the 3rd time.", "C'était la troisième fois.", "en", "fr", []),
        ("我有3个苹果", "I have three apples", "zh", "en", []),
        ("我有3个苹果", "I have two apples", "zh", "en", [num("3")]),
        ("I have 3 apples.", "我有三个苹果。", "en", "zh", []),
        ("I have 3 apples.", "사과 세 개가 있어요.", "en", "ko", []),
        ("I have 3 apples.", "사과 삼 개가 있어요.", "en", "ko", []),
        ("I have 3 apples.", "사과가 있어요.", "en", "ko", [num("3")]),
        # clock times
        ("We meet at 10:30.", "On se voit à 10h30.", "en", "fr", []),
        ("We meet at 10:30.", "十点半见。", "en", "zh", []),
        ("We meet at 10:00.", "Wir treffen uns um 10 Uhr.", "en", "de", []),
        ("Meet me at 5 pm.", "Treffen wir uns um 17 Uhr.", "en", "de", []),
        ("Call me at 9:45.", "Ruf mich um Viertel vor zehn an.", "en", "de", []),
        ("Call me at 9:30.", "Ruf mich um halb zehn an.", "en", "de", []),
        ("Call me at 9:30.", "Ruf mich um zehn an.", "en", "de", [num("9:30")]),
        ("Meet me at 5 pm.", "Treffen wir uns um 18 Uhr.", "en", "de", [num("5 pm", "17:00")]),
        # names: transliterated in Cyrillic and CJK, except acronyms and product names
        ("I took a GPU to London.", "Я отвёз видеокарту в Лондон.", "en", "ru", [name("GPU")]),
        ("I took a GPU to London.", "Я отвёз GPU в Лондон.", "en", "ru", []),
        ("I live in Paris.", "J'habite dans la capitale.", "en", "fr", [name("Paris")]),
        ("I live in Paris.", "J'habite à Paris.", "en", "fr", []),
        ("It is Paris's best café.", "Es ist Paris' bestes Café.", "en", "de", []),
        ("I flew to London.", "Volé a Londres.", "en", "es", []),  # stem
        ("I went to Germany.", "Je suis allé en Allemagne.", "en", "fr", []),  # exonym
        ("I use an iPhone in Berlin.", "Uso un telefono a Berlino.", "en", "it", [name("iPhone")]),
        ("我用Qwen3模型", "I used the Qwen3 model", "zh", "en", []),
        ("我用Qwen3模型", "I used the Qwen model", "zh", "en", [name("Qwen3")]),
        ("Qwen3 is here.", "Qwen3が来た。", "en", "ja", []),
        ("NASA launched it.", "НАСА запустило его.", "en", "ru", [name("NASA")]),
    ],
)
def test_missing_items(
    source_text: str, translation: str, source: str, target: str, missing: list[Item]
) -> None:
    assert missing_items(source_text, translation, source, target) == missing


def test_glossary_terms_are_ignored() -> None:
    line = "Qwen3 TTS reads 3 lines in Paris."
    assert missing_items(line, "Lee líneas.", "en", "es") == [
        name("Qwen3"),
        name("TTS"),
        num("3"),
        name("Paris"),
    ]
    assert missing_items(line, "Lee líneas.", "en", "es", ignore=["Qwen3 TTS", "paris"]) == [num("3")]


def test_chinese_has_no_num2words_but_kanji_count() -> None:
    # num2words 0.5.14 has no Chinese converter: spelled-out Chinese numbers are read by the kanji parser
    assert missing_items("I waited 2,024 days.", "我等了二千零二十四天。", "en", "zh") == []
    assert missing_items("I waited 2,024 days.", "我等了两千天。", "en", "zh") == [num("2,024", "2024")]


# -- kanji and hangul numerals --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "lang", "value"),
    [
        ("〇", "ja", 0), ("十", "ja", 10), ("十五", "ja", 15), ("二十", "ja", 20), ("百二", "ja", 102),
        ("百二", "zh", 120), ("一百零二", "zh", 102), ("千", "ja", 1000), ("二千二十四", "ja", 2024),
        ("二〇二四", "zh", 2024), ("一万五千", "ja", 15000), ("一万五", "zh", 15000), ("两", "zh", 2),
        ("两千", "zh", 2000), ("三十万", "zh", 300000), ("一億", "ja", 100000000),
        ("三点五", "zh", Decimal("3.5")), ("百二", "ko", 102),
    ],
)  # fmt: skip
def test_parse_cjk_number(text: str, lang: str, value: int | Decimal) -> None:
    assert parse_cjk_number(text, lang) == value


@pytest.mark.parametrize("text", ["", "十十", "万万", "三〇五十", "千百万億", "百分", "abc"])
def test_parse_cjk_number_rejects(text: str) -> None:
    assert parse_cjk_number(text, "ja") is None


def test_korean_single_syllable_numerals_need_a_counter() -> None:
    # 이 ("this"), 일 ("work"), 만 ("only") are words too: a lone syllable only counts before a counter
    assert missing_items("I bought 2 books.", "이 책을 샀다.", "en", "ko") == []  # followed by a space
    assert missing_items("I bought 2 books.", "책이 좋다.", "en", "ko") == [num("2")]
    assert missing_items("It costs 15,000 won.", "만 오천 원입니다.", "en", "ko") == []
    assert missing_items("It costs 10,000 won.", "만약 그렇다면.", "en", "ko") == [num("10,000", "10000")]


# -- keep terms -----------------------------------------------------------------------------------------


def test_keep_terms_in_target_conventions() -> None:
    items = protected_items("GPT-4 costs $1,000 for 3.5 km, 12 times, at 10:30 in New York.", "en")
    assert keep_terms(items, "de") == {
        "GPT-4": "GPT-4", "$": "$", "1,000": "1.000", "3.5": "3,5", "km": "km", "12": "12",
        "10:30": "10:30", "New York": "New York",
    }  # fmt: skip
    assert keep_terms(items, "ru")["km"] == "км"
    assert keep_terms(items, "fr")["1,000"] == "1 000"
    assert keep_terms(items, "ja")["1,000"] == "1,000"
    assert keep_terms(protected_items("3 million people", "en"), "en") == {"3 million": "3,000,000"}


REFUSAL = "a refusal instead of a translation"
UNTRANSLATED = "untranslated (same as the source)"
JA_LINE = "明日は牛乳を買ってきてください。お願いします"


# -- not a translation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source_text", "translation", "source", "target", "reason"),
    [
        ("Hello there!", "", "en", "fr", "empty translation"),
        ("Hello there!", "  \n", "en", "fr", "empty translation"),
        ("♪", "", "en", "fr", None),
        ("Hello there!", "...", "en", "fr", "only punctuation, no words"),
        ("Buy milk tomorrow.", "I'm sorry, but I can't help with that.", "de", "en", REFUSAL),
        ("Kauf morgen Milch.", "抱歉，我无法翻译这段内容。", "de", "zh", REFUSAL),
        ("Kauf morgen Milch.", "申し訳ありませんが、翻訳できません。", "de", "ja", REFUSAL),
        ("Kauf morgen Milch.", "죄송하지만 번역할 수 없습니다.", "de", "ko", REFUSAL),
        ("Kauf morgen Milch.", "Я не могу перевести этот текст.", "de", "ru", REFUSAL),
        ("Buy milk tomorrow.", "Désolé, je ne peux pas traduire ce texte.", "en", "fr", REFUSAL),
        ("Buy milk tomorrow.", "Es tut mir leid, aber das kann ich nicht übersetzen.", "en", "de", REFUSAL),
        ("Buy milk tomorrow.", "Lo siento, pero no puedo ayudar con eso.", "en", "es", REFUSAL),
        ("Buy milk tomorrow.", "Mi dispiace, ma non posso aiutarti.", "en", "it", REFUSAL),
        ("Buy milk tomorrow.", "Desculpe, mas não posso ajudar com isso.", "en", "pt", REFUSAL),
        ("Kauf morgen Milch.", "As an AI language model, I cannot buy milk.", "de", "en",
         "an AI-assistant answer instead of a translation"),
        ("Buy milk tomorrow.", "Here is the translation: Compra leche mañana.", "en", "es",
         "a comment about the translation instead of one"),
        # the source apologises or refuses too: the translation is only translating it
        ("I'm sorry, I can't come.", "Lo siento, no puedo ir.", "en", "es", None),
        ("Sorry, but I'm busy.", "Désolé, mais je suis occupé.", "en", "fr", None),
        ("行けない。ごめん", "I can't go. Sorry.", "ja", "en", None),
        ("I can't help it, I love her.", "Je ne peux pas m'en empêcher, je l'aime.", "en", "fr", None),
        ("What's the translation of 'cat'?", "Quelle est la traduction de « cat » ?", "en", "fr", None),
        ("Buy milk tomorrow.", "Compra leche mañana.", "en", "es", None),
        # untranslated
        ("Buy milk tomorrow, please.", "buy  milk tomorrow,please.", "en", "es", UNTRANSLATED),
        (JA_LINE, JA_LINE, "ja", "en", UNTRANSLATED),
        (JA_LINE[:11], JA_LINE[:11], "ja", "en", None),  # under 12 CJK characters
        ("Buy milk.", "Buy milk.", "en", "es", None),  # too short to tell
        ("Buy milk tomorrow, please.", "Buy milk tomorrow, please.", None, "es", None),  # source unknown
        ("Buy milk tomorrow, please.", "Buy milk tomorrow, please.", "en", "en", None),
        ("Tom Hanks, Meg Ryan", "Tom Hanks, Meg Ryan", "en", "es", None),  # only names
    ],
)  # fmt: skip
def test_refusal_reason(
    source_text: str, translation: str, source: str | None, target: str, reason: str | None
) -> None:
    assert refusal_reason(source_text, translation, source, target) == reason
