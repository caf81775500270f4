"""What must survive translation (numbers, names, units), and translations that are not translations.

A machine translator drops or changes a number now and then ("3 km" comes back as "5キロ"), loses a
product name, or answers "I'm sorry, I can't help with that" instead of translating. These checks are
pure text functions so the translation stage can re-ask (with `keep_terms` as verbatim terms) before a
wrong line is voiced. They must not cry wolf: a re-ask costs a call and a dubbing voice is not a
proofreader, so every rule below errs towards *accepting* a translation when a language writes the
same thing another way (digits in the target's conventions, number words, kanji and hangul numerals,
unit words, exonyms, transliterated names).

Texts are NFKC-normalised first, so full-width digits and symbols ("３", "％", "℃", "㎞") are plain
ones and an item's `surface` is the source as written after that normalisation.

Units: a small table of what is commonly written after (currencies and 百分之: before) a number and
what a translation may write instead: % km km/h cm mm kg g min °C °F $ € £ ¥. Left out on purpose:
bare "m" (metre, minute or million), "h" (read as a clock time: "20 h" is 20:00), "s", "l", "mi",
pounds as weight ("5 pounds" is only accepted as £, never detected as one). ¥ is yen or yuan: both
are accepted. Kana/hangul "キロ"/"킬로" are km or kg: accepted for either, never detected in a source.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from core.languages import LANGUAGES, is_wide

Kind = Literal["number", "name", "unit"]

LATIN_SCRIPT = frozenset({"en", "de", "it", "pt", "es", "fr"})


@dataclass(frozen=True)
class Item:
    kind: Kind
    surface: str  # as written in the (NFKC-normalised) source: "1,000", "3 million", "New York", "km"
    value: str  # number: normalised decimal ("1000", "3.5", "-5") or clock time "10:30"; unit: its id
    # (see UNIT_IDS); name: the surface


# -- text folding -----------------------------------------------------------------------------------------

_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2212"
_APOSTROPHES = "\u2019\u2018\u02bc\u00b4`"


@functools.lru_cache(maxsize=8192)
def _fold_char(ch: str) -> str:
    if ch in _DASHES:
        return "-"
    if ch in _APOSTROPHES:
        return "'"
    low = ch.lower()[:1]  # "İ".lower() is two characters: keep the fold one-to-one
    if ord(low) < 0x500:  # Latin and Cyrillic: drop accents (é -> e, ё -> е); kana and hangul are kept
        return unicodedata.normalize("NFKD", low)[:1]
    return low


def _fold(text: str) -> str:
    """Lower case without accents, character for character (positions stay valid)."""
    return "".join(_fold_char(ch) for ch in text)


def _fold_pattern(pattern: str) -> str:
    """Fold the non-ASCII letters of a regex written with accents; ASCII (the regex syntax) is kept."""
    return "".join(_fold_char(ch) if ord(ch) >= 0x80 else ch for ch in pattern)


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


_LETTERS = "A-Za-z\u00c0-\u024f\u0400-\u04ff"  # Latin and Cyrillic: a digit glued to these is part of a word
_WORD = f"0-9{_LETTERS}_"
_NOT_AFTER_LETTER = r"(?<![a-z\u0430-\u044f])"  # on folded text
_NOT_BEFORE_LETTER = r"(?![a-z\u0430-\u044f])"
_THIN_SPACES = "\u00a0\u202f\u2009"

# -- numbers in digits ------------------------------------------------------------------------------------


def _separators(lang: str) -> tuple[str, str, bool]:
    """(thousands-group punctuation, decimal mark, whether a plain space also groups thousands), read
    leniently from the language's decimal mark: the other of "." and "," groups, and where the decimal
    mark is "," a plain space groups too. Narrow and no-break spaces group thousands everywhere (SI
    style). English-style sources never group with a plain space: "in 2024 200 people" is two numbers."""
    decimal = LANGUAGES.get(lang, LANGUAGES["en"]).decimal_mark
    return ("," if decimal == "." else "."), decimal, decimal == ","


@functools.cache
def _number_re(lang: str) -> re.Pattern[str]:
    spaces = _THIN_SPACES + (" " if _separators(lang)[2] else "")
    return re.compile(rf"(?<![{_WORD}])\d+(?:[.,]\d+|[{spaces}]\d{{3}}(?!\d))*")


def _grouped(groups: list[str], seps: list[str], group: str, decimal: str) -> Decimal | None:
    frac = ""
    if seps[-1] == decimal:
        if seps.count(decimal) != 1:
            return None
        frac, groups, seps = groups[-1], groups[:-1], seps[:-1]
    if seps:
        kinds = {" " if sep.isspace() else sep for sep in seps}
        if len(kinds) != 1 or kinds - {" ", group}:
            return None
        if not 1 <= len(groups[0]) <= 3 or any(len(g) != 3 for g in groups[1:]):
            return None
    return Decimal("".join(groups) + (f".{frac}" if frac else ""))


def _interpret(token: str, lang: str) -> list[Decimal]:
    """Values of a digit token under `lang`'s conventions; under the other convention when it does not fit
    ("3.5" in a German text is 3.5, not a malformed 35); else each digit group on its own ("1,2,3")."""
    seps = re.findall(r"[.,\s]", token)
    groups = re.split(r"[.,\s]", token)
    if not seps:
        return [Decimal(token)]
    group, decimal, _ = _separators(lang)
    for g, d in ((group, decimal), (decimal, group)):
        value = _grouped(groups, seps, g, d)
        if value is not None:
            return [value]
    return [Decimal(g) for g in groups]


def _decimal_str(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


# Scale words after digits: "3 million" is 3000000 whatever the language writes ("300万", "3 Millionen").
_SCALES: dict[str, tuple[tuple[str, int], ...]] = {
    "en": ((r"thousands?", 10**3), (r"millions?", 10**6), (r"billions?", 10**9), (r"trillions?", 10**12)),
    "de": (("tausend", 10**3), (r"million(?:en)?|mio\.?", 10**6), (r"milliarden?|mrd\.?", 10**9),
           (r"billion(?:en)?", 10**12)),
    "fr": (("mille", 10**3), (r"millions?", 10**6), (r"milliards?", 10**9), (r"billions?", 10**12)),
    "es": (("mil", 10**3), (r"millón|millones", 10**6), (r"billón|billones", 10**12)),
    "it": (("mila|mille", 10**3), (r"milion[ei]", 10**6), (r"miliard[oi]", 10**9)),
    "pt": (("mil", 10**3), (r"milhão|milhões", 10**6), (r"bilhão|bilhões", 10**9),
           (r"bilião|biliões", 10**12)),
    "ru": ((r"тысяч\w*|тыс\.?", 10**3), (r"миллион\w*|млн\.?", 10**6), (r"миллиард\w*|млрд\.?", 10**9),
           (r"триллион\w*|трлн\.?", 10**12)),
}  # fmt: skip
_CJK_MULTIPLIERS = {
    "十": 10, "百": 100, "千": 1000, "万": 10**4, "萬": 10**4, "亿": 10**8, "億": 10**8, "兆": 10**12,
    "십": 10, "백": 100, "천": 1000, "만": 10**4, "억": 10**8, "조": 10**12,
}  # fmt: skip


@functools.cache
def _scale_res(lang: str) -> tuple[tuple[re.Pattern[str], int], ...]:
    return tuple(
        (re.compile(rf"[ {_THIN_SPACES}]?(?:{_fold_pattern(p)}){_NOT_BEFORE_LETTER}"), f)
        for p, f in _SCALES.get(lang, ())
    )


def _scale_after(folded: str, pos: int, lang: str) -> tuple[int, int]:
    """The factor of the scale words right after a number ("mil millones": 10**9) and where they end."""
    factor = 1
    if lang in ("zh", "ja", "ko"):
        end = pos
        while end < len(folded) and folded[end] in _CJK_MULTIPLIERS and end - pos < 3:
            factor *= _CJK_MULTIPLIERS[folded[end]]
            end += 1
        return factor, end
    for _ in range(2):
        for pattern, f in _scale_res(lang):
            m = pattern.match(folded, pos)
            if m:
                factor, pos = factor * f, m.end()
                break
        else:
            break
    return factor, pos


# -- numbers in kanji and hangul --------------------------------------------------------------------------

_CJK_DIGITS = {
    "〇": 0, "零": 0, "一": 1, "壱": 1, "壹": 1, "幺": 1, "二": 2, "弐": 2, "贰": 2, "貳": 2,
    "两": 2, "兩": 2, "三": 3, "参": 3, "叁": 3, "參": 3, "四": 4, "肆": 4, "五": 5, "伍": 5,
    "六": 6, "陆": 6, "陸": 6, "七": 7, "柒": 7, "八": 8, "捌": 8, "九": 9, "玖": 9,
}  # fmt: skip
_CJK_SMALL = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}
_CJK_BIG = {"万": 10**4, "萬": 10**4, "亿": 10**8, "億": 10**8, "兆": 10**12}
_CJK_POINT = "点點"
_CJK_NUMERALS = "".join(_CJK_DIGITS) + "".join(_CJK_SMALL) + "".join(_CJK_BIG)
_CJK_RUN = re.compile(f"[{_CJK_NUMERALS}]+(?:[{_CJK_POINT}][{''.join(_CJK_DIGITS)}]+)?")


def parse_cjk_number(text: str, lang: str = "ja") -> Decimal | None:
    """The value of a Chinese/Japanese numeral ("二千二十四" -> 2024, "一万五千" -> 15000, "两" -> 2,
    "二〇二四" -> 2024 read digit by digit, "三点五" -> 3.5), or None when `text` is not one.

    Chinese abbreviates a trailing digit to the next lower place ("一百二" = 120, "一万五" = 15000) unless a
    零 stands before it ("一百零二" = 102); Japanese and Korean (`lang="ko"`, after mapping hangul to these
    characters) do not ("百二" = 102). Korean is never read digit by digit.
    """
    if not text:
        return None
    for point in _CJK_POINT:
        if point in text:
            whole, _, frac = text.partition(point)
            head = parse_cjk_number(whole, lang)
            if head is None or not frac or any(ch not in _CJK_DIGITS for ch in frac):
                return None
            return head + Decimal("0." + "".join(str(_CJK_DIGITS[ch]) for ch in frac))
    if all(ch in _CJK_DIGITS for ch in text):
        if len(text) == 1:
            return Decimal(_CJK_DIGITS[text])
        if lang == "ko":
            return None
        return Decimal("".join(str(_CJK_DIGITS[ch]) for ch in text))
    total = section = 0
    pending: int | None = None
    last_small = last_big = 10**13
    last_unit = 0
    zero_seen = False
    for ch in text:
        if ch in _CJK_DIGITS:
            digit = _CJK_DIGITS[ch]
            if pending is not None:
                return None
            if digit == 0:
                zero_seen = True
            else:
                pending = digit
        elif ch in _CJK_SMALL:
            mult = _CJK_SMALL[ch]
            if mult >= last_small:
                return None
            section += (1 if pending is None else pending) * mult
            pending, last_small, last_unit, zero_seen = None, mult, mult, False
        elif ch in _CJK_BIG:
            big = _CJK_BIG[ch]
            if big >= last_big:
                return None
            section += pending or 0
            total += (section or 1) * big
            section, pending, last_small, last_big, last_unit, zero_seen = 0, None, 10**13, big, big, False
        else:
            return None
    if pending is not None:
        abbreviated = lang == "zh" and not zero_seen and last_unit >= 100
        section += pending * (last_unit // 10 if abbreviated else 1)
    return Decimal(total + section)


def _cjk_values(text: str, lang: str) -> set[Decimal]:
    """Every numeral in a Chinese/Japanese text; a run that is not one number is read as the longest
    numbers it starts with ("三四人" also gives 3 and 4, "十点半" gives 10)."""
    values: set[Decimal] = set()
    for m in _CJK_RUN.finditer(text):
        run = m.group()
        pieces = (parse_cjk_number(p, lang) for p in re.split(f"[{_CJK_POINT}]", run))
        values.update(v for v in pieces if v is not None)
        values.update(_scan(run, lambda s: parse_cjk_number(s, lang)))
        if len(run) > 1 and all(ch in _CJK_DIGITS for ch in run):
            values.update(Decimal(_CJK_DIGITS[ch]) for ch in run)
    return values


def _scan(run: str, parse: Callable[[str], Decimal | None]) -> list[Decimal]:
    out: list[Decimal] = []
    i = 0
    while i < len(run):
        for j in range(len(run), i, -1):
            value = parse(run[i:j])
            if value is not None:
                out.append(value)
                i = j
                break
        else:
            i += 1
    return out


_MIXED = re.compile(
    r"\d+(?:\.\d+)?[十百千万萬亿億兆](?:(?:\d+(?:\.\d+)?)?[十百千万萬亿億兆])*\d*"
    r"|\d+(?:\.\d+)? ?[십백천만억조](?: ?(?:\d+(?:\.\d+)?)? ?[십백천만억조])* ?\d*"
)
_MIXED_PART = re.compile(r"(\d+(?:\.\d+)?)? ?([十百千万萬亿億兆십백천만억조])|(\d+)")
_BIG_MULTIPLIERS = frozenset("万萬亿億兆만억조")


def _mixed_values(text: str) -> set[Decimal]:
    """Digits with kanji/hangul multipliers: "1万5千" and "1만 5천" are 15000, "3千5百" is 3500. A
    multiplier that does not descend starts another number ("15만 3만" is two)."""
    values: set[Decimal] = set()
    for m in _MIXED.finditer(text):
        total = section = Decimal(0)
        last_big = 10**13
        for number, mult, tail in _MIXED_PART.findall(m.group()):
            if tail:
                section += Decimal(tail)
            elif mult in _BIG_MULTIPLIERS:
                big = _CJK_MULTIPLIERS[mult]
                if big >= last_big:
                    values.add(total + section)
                    total = section = Decimal(0)
                total += ((section + Decimal(number or 0)) or 1) * big
                section, last_big = Decimal(0), big
            else:
                section += Decimal(number or 1) * _CJK_MULTIPLIERS[mult]
        values.add(total + section)
    return values


_HANGUL_NUMERALS = {
    "영": "〇", "공": "〇", "일": "一", "이": "二", "삼": "三", "사": "四", "오": "五", "육": "六",
    "륙": "六", "칠": "七", "팔": "八", "구": "九", "십": "十", "백": "百", "천": "千", "만": "万",
    "억": "亿", "조": "兆",
}  # fmt: skip
_HANGUL_RUN = re.compile(f"(?<![가-힣])[{''.join(_HANGUL_NUMERALS)}](?: ?[{''.join(_HANGUL_NUMERALS)}])*")
# Counters and units written right after a Korean numeral: a one-syllable numeral ("이", "일", "만") is
# also a word ("this", "work", "only"), so it only counts before one of these or a non-hangul character.
_KO_COUNTER = re.compile(
    r" ?(?:개|명|번|살|시|분|초|년|월|일|주|층|원|달러|킬로|미터|그램|센티|밀리|퍼센트|"
    r"프로|도|배|권|마리|잔|장|대|병|가지|사람|세|호|회|차|등|위|점|인)"
)


def _is_hangul(ch: str) -> bool:
    return "가" <= ch <= "힣"


def _korean_boundary(text: str, end: int) -> bool:
    return end >= len(text) or not _is_hangul(text[end]) or bool(_KO_COUNTER.match(text, end))


def _hangul_values(text: str) -> set[Decimal]:
    """Sino-Korean numerals (삼, 십오, 이천이십사, 만 오천), parsed as their hanja equivalents."""
    values: set[Decimal] = set()
    for m in _HANGUL_RUN.finditer(text):
        positions = [m.start() + k for k, ch in enumerate(m.group()) if ch != " "]
        syllables = "".join(text[p] for p in positions)
        i = 0
        while i < len(syllables):
            for j in range(len(syllables), i, -1):
                value = parse_cjk_number("".join(_HANGUL_NUMERALS[s] for s in syllables[i:j]), "ko")
                if value is not None and (j - i > 1 or _korean_boundary(text, positions[j - 1] + 1)):
                    values.add(value)
                    i = j
                    break
            else:
                i += 1
    return values


_KO_NATIVE_UNITS = {
    1: ("하나", "한"), 2: ("둘", "두"), 3: ("셋", "세", "석"), 4: ("넷", "네", "넉"), 5: ("다섯", "닷"),
    6: ("여섯", "엿"), 7: ("일곱",), 8: ("여덟",), 9: ("아홉",),
}  # fmt: skip
_KO_NATIVE_TENS = {
    1: ("열",), 2: ("스물", "스무"), 3: ("서른",), 4: ("마흔",), 5: ("쉰",), 6: ("예순",), 7: ("일흔",),
    8: ("여든",), 9: ("아흔",),
}  # fmt: skip


def _korean_native_forms(n: int) -> tuple[str, ...]:
    """Native Korean numerals 1..99 ("세 개", "열두 시"), which counting uses instead of Sino-Korean."""
    if not 1 <= n <= 99:
        return ()
    tens, units = divmod(n, 10)
    if not tens:
        return _KO_NATIVE_UNITS[units]
    if not units:
        return _KO_NATIVE_TENS[tens]
    return tuple(t + u for t in _KO_NATIVE_TENS[tens] if t != "스무" for u in _KO_NATIVE_UNITS[units])


def _korean_native_present(n: int, text: str) -> bool:
    for form in _korean_native_forms(n):
        for m in re.finditer(f"(?<![가-힣]){form}", text):
            if len(form) > 1 or _korean_boundary(text, m.end()):
                return True
    return False


# -- numbers in words (num2words) -------------------------------------------------------------------------

_NUM2WORDS_LANGS = frozenset({"en", "de", "it", "pt", "es", "fr", "ru"})  # zh has no converter; ja and ko
# are covered by the kanji/hangul readers above.
_CONNECTORS = frozenset({"and", "et", "y", "e", "und"})
_RU_CASES = ("nominative", "genitive", "dative", "accusative", "instrumental", "prepositional")
_DE_SUFFIX = r"(?:mal|fach|jahrig\w*|tagig\w*|stundig\w*|minutig\w*|teilig\w*|seitig\w*|prozentig\w*)?"


def _num2words() -> Callable[..., str] | None:
    try:
        from num2words import num2words
    except ImportError:
        return None
    return num2words


def _word_token(token: str, lang: str, first: bool, next_token: str) -> str:
    """One spelled-out token as a regex that also takes its gendered or elided forms."""
    t = re.escape(token)
    if lang == "en" and first and token == "one" and next_token in ("hundred", "thousand", "million"):
        return "(?:one|a)"
    if lang == "de":
        if token.endswith("eins"):
            return re.escape(token[:-4]) + "ein(?:s|e|en|em|er|es)?"
        if token.startswith(("einhundert", "eintausend")):
            return "(?:ein)?" + re.escape(token[3:])
    if lang == "fr" and token == "un":
        return "une?"
    if lang in ("es", "it") and token.endswith("uno"):
        return re.escape(token[:-3]) + "(?:uno|una|un)"
    if lang == "es" and token.endswith("ientos"):
        return re.escape(token[:-2]) + "(?:os|as)"
    if lang == "pt":
        if token == "um":
            return "uma?"
        if token == "dois":
            return "(?:dois|duas)"
        if token.endswith("entos"):
            return re.escape(token[:-2]) + "(?:os|as)"
    return t


def _words_regex(words: str, lang: str, ordinal: bool = False) -> str:
    tokens = [t for t in re.split(r"[\s\-]+", _fold(words).strip()) if t]
    if lang == "ru" and len(tokens) > 1 and tokens[0].startswith("одн") and not ordinal:
        tokens = tokens[1:]  # "тысяча" as well as "одна тысяча"
    out = ""
    for k, token in enumerate(tokens):
        last = k == len(tokens) - 1
        if ordinal and last and lang != "en" and len(token) >= 5:
            piece = re.escape(token[: -2 if lang == "ru" else -1]) + r"\w*"
        else:
            piece = _word_token(token, lang, k == 0, tokens[k + 1] if not last else "")
        sep = r"[\s\-]*" if out else ""
        out += f"(?:{sep}{piece})?" if token in _CONNECTORS and k > 0 and not last else sep + piece
    return out


@functools.lru_cache(maxsize=4096)
def _number_word_patterns(n: int, lang: str) -> tuple[re.Pattern[str], ...]:
    """Regexes for `n` spelled out in `lang` (cardinal; ordinal up to 100), from num2words."""
    converter = _num2words()
    if converter is None or lang not in _NUM2WORDS_LANGS:
        return ()
    regexes: set[str] = set()
    try:
        if lang == "ru":
            for case in _RU_CASES:
                for gender in "mfn":
                    regexes.add(_words_regex(converter(n, lang="ru", case=case, gender=gender), lang))
        else:
            regexes.add(_words_regex(converter(n, lang=lang), lang))
        if 0 < n <= 100:
            regexes.add(_words_regex(converter(n, lang=lang, to="ordinal"), lang, ordinal=True))
    except (NotImplementedError, KeyError, ValueError, TypeError, OverflowError):
        pass
    right = _DE_SUFFIX + r"(?![^\W\d_])" if lang == "de" else r"(?![^\W\d_])"
    return tuple(re.compile(rf"(?<![^\W\d_]){r}{right}") for r in sorted(regexes) if r)


def _spellable(value: Decimal) -> bool:
    """Small integers, and round ones ("3000", "3 million") that a translator may well spell out."""
    if value != value.to_integral_value() or not 0 <= value <= 10**12:
        return False
    digits = str(int(value)).rstrip("0")
    return value <= 1000 or len(digits) <= 2


# -- units ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Unit:
    symbols: tuple[str, ...]  # written after (or before) a number in any language
    words: dict[str, tuple[str, ...]]  # per language, regexes: after a number in a source; in a target
    loose: dict[str, tuple[str, ...]] = field(default_factory=dict)  # ambiguous: accepted in a target only
    local_symbol: dict[str, str] = field(default_factory=dict)  # the symbol a language writes, if not ours
    before: tuple[str, ...] = ()  # written before the number: "$5", "百分之15"


_EN_FR_ES_PT = ("en", "fr", "es", "pt")
_DEGREE_WORDS = {
    "en": (r"degrees?",), "de": ("grad",), "fr": (r"degrés?",), "es": (r"grados?",), "it": (r"grad[oi]",),
    "pt": (r"graus?",), "ru": (r"градус\w*",), "ja": ("度",), "ko": ("도",), "zh": ("度",),
}  # fmt: skip

# Matched in this order (km/h before km, km before kg: "kilo" alone is a kilogram in Latin languages).
_UNITS: dict[str, _Unit] = {
    "km/h": _Unit(
        ("km/h", "kph", "km/hr"),
        {"en": (r"kilomet(?:er|re)s? (?:per|an|a) hour",),
         "de": (r"stundenkilometer\w*", "kilometer pro stunde"),
         "fr": (r"kilomètres? (?:à l'heure|par heure|heure)",), "es": (r"kilómetros? por hora",),
         "it": (r"chilometri (?:orari|all'ora|l'ora|per ora)",), "pt": (r"quilômetros? por hora",),
         "ru": ("км/ч", r"километр\w* в час"), "ja": ("キロメートル毎時",),
         "zh": ("公里每小时", "公里/小时", "千米每小时")},
        loose={"ja": (r"時速.*キロ",), "ko": (r"시속.*킬로",), "zh": (r"[时時]速.*(?:公里|千米)",)},
        local_symbol={"ru": "км/ч"},
    ),
    "%": _Unit(
        ("%",),
        {"en": ("percent", "per cent"), "de": ("prozent",), "fr": ("pour cent", "pourcent"),
         "es": ("por ciento",), "it": ("per cento", "percento"), "pt": ("por cento",),
         "ru": (r"процент\w*",), "ja": ("パーセント",), "ko": ("퍼센트", "프로"), "zh": ("百分之",)},
        before=("百分之",),
    ),
    "km": _Unit(
        ("km",),
        {"en": (r"kilomet(?:er|re)s?",), "de": (r"kilometer\w*",), "fr": (r"kilomètres?",),
         "es": (r"kilómetros?",), "it": (r"chilometr[oi]",), "pt": (r"quilômetros?",),
         "ru": ("км", r"километр\w*"), "ja": ("キロメートル", "キロメーター"), "ko": ("킬로미터",),
         "zh": ("公里", "千米")},
        loose={"ja": ("キロ",), "ko": ("킬로",)},
        local_symbol={"ru": "км"},
    ),
    "kg": _Unit(
        ("kg",),
        {"en": (r"kilo(?:gram(?:me)?)?s?",), "de": (r"kilo(?:gramm\w*)?",), "fr": (r"kilo(?:gramme)?s?",),
         "es": (r"kilo(?:gramo)?s?",), "it": (r"chil[oi]", r"chilogramm[oi]"),
         "pt": (r"quilo(?:grama)?s?",), "ru": ("кг", r"килограмм\w*", "кило"), "ja": ("キログラム",),
         "ko": ("킬로그램",), "zh": ("公斤", "千克")},
        loose={"ja": ("キロ",), "ko": ("킬로",)},
        local_symbol={"ru": "кг"},
    ),
    "cm": _Unit(
        ("cm",),
        {"en": (r"centimet(?:er|re)s?",), "de": (r"zentimeter\w*",), "fr": (r"centimètres?",),
         "es": (r"centímetros?",), "it": (r"centimetr[oi]",), "pt": (r"centímetros?",),
         "ru": ("см", r"сантиметр\w*"), "ja": ("センチメートル", "センチ"), "ko": ("센티미터", "센티"),
         "zh": ("厘米", "公分")},
        local_symbol={"ru": "см"},
    ),
    "mm": _Unit(
        ("mm",),
        {"en": (r"millimet(?:er|re)s?",), "de": (r"millimeter\w*",), "fr": (r"millimètres?",),
         "es": (r"milímetros?",), "it": (r"millimetr[oi]",), "pt": (r"milímetros?",),
         "ru": ("мм", r"миллиметр\w*"), "ja": ("ミリメートル",), "ko": ("밀리미터",), "zh": ("毫米",)},
        loose={"ja": ("ミリ",), "ko": ("밀리",)},
        local_symbol={"ru": "мм"},
    ),
    "min": _Unit(
        ("min",),
        {"en": (r"minutes?", r"mins?"), "de": (r"minute\w*",), "fr": (r"minutes?",), "es": (r"minutos?",),
         "it": (r"minut[oi]",), "pt": (r"minutos?",), "ru": ("мин", r"минут\w*"), "ja": ("分間",),
         "ko": ("분간",), "zh": ("分钟", "分鐘")},
        # "3分の1" is a third: 分 alone is never taken as minutes in a source
        loose={"ja": ("分",), "ko": ("분",), "zh": ("分",)},
        local_symbol={"ru": "мин"},
    ),
    "g": _Unit(
        ("g",),
        {"en": (r"grams?", r"grammes?"), "de": (r"gramm\w*",), "fr": (r"grammes?",), "es": (r"gramos?",),
         "it": (r"gramm[oi]",), "pt": (r"gramas?",), "ru": (r"грамм\w*",), "ja": ("グラム",),
         "ko": ("그램",), "zh": ("克",)},
        loose={"ru": ("г",)},  # "2024 г." is a year: never taken as grams in a source
        local_symbol={"ru": "г"},
    ),
    "°C": _Unit(
        ("°c",),
        {"en": (r"degrees? (?:celsius|centigrade)", "celsius"), "de": ("grad celsius", "celsius"),
         "fr": (r"degrés? celsius", "celsius"), "es": (r"grados? (?:celsius|centígrados)", "celsius"),
         "it": (r"gradi (?:celsius|centigradi)", "celsius"),
         "pt": (r"graus? (?:celsius|centígrados)", "celsius"),
         "ru": (r"градус\w* цельси\w*", r"цельси\w*"), "ja": ("摂氏", "セ氏"), "ko": ("섭씨",),
         "zh": ("摄氏", "攝氏")},
        loose={lang: (*forms, "°") for lang, forms in _DEGREE_WORDS.items()},
    ),
    "°F": _Unit(
        ("°f",),
        {**{lang: ("fahrenheit",) for lang in LATIN_SCRIPT}, "ru": (r"фаренгейт\w*",),
         "ja": ("華氏", "カ氏"), "ko": ("화씨",), "zh": ("华氏", "華氏")},
        loose={lang: (*forms, "°") for lang, forms in _DEGREE_WORDS.items()},
    ),
    "$": _Unit(
        ("$",),
        {"en": (r"dollars?", r"bucks?"), "de": ("dollar",), "fr": (r"dollars?",), "es": (r"dólar(?:es)?",),
         "it": (r"dollar[oi]",), "pt": (r"dólar(?:es)?",), "ru": (r"доллар\w*",), "ja": ("ドル",),
         "ko": ("달러",), "zh": ("美元", "美金")},
        before=("$",),
    ),
    "€": _Unit(
        ("€",),
        {**{lang: (r"euros?",) for lang in _EN_FR_ES_PT}, "de": ("euro",), "it": ("euro",),
         "ru": ("евро",), "ja": ("ユーロ",), "ko": ("유로",), "zh": ("欧元", "歐元")},
        before=("€",),
    ),
    "£": _Unit(
        ("£",),
        {"en": (r"pounds? sterling", "quid")},
        loose={"en": (r"pounds?",), "de": ("pfund",), "fr": (r"livres?",), "es": (r"libras?",),
               "it": (r"sterlin[ae]", r"libbr[ae]"), "pt": (r"libras?",), "ru": (r"фунт\w*",),
               "ja": ("ポンド",), "ko": ("파운드",), "zh": ("英镑", "英鎊")},
        before=("£",),
    ),
    "¥": _Unit(
        ("¥",),
        {"en": ("yen", "yuan"), "de": ("yen", "yuan"), "fr": (r"yens?", r"yuans?"),
         "es": (r"yen(?:es)?", r"yuan(?:es)?"), "it": ("yen", "yuan"),
         "pt": (r"ienes?", "yen", "yuan", r"iuan(?:es)?"), "ru": (r"иен\w*", r"йен\w*", r"юан\w*"),
         "ja": ("円", "元"), "ko": ("엔", "위안"), "zh": ("日元", "元", "块", "塊")},
        before=("¥",),
    ),
}  # fmt: skip
UNIT_IDS = tuple(_UNITS)


def _form(pattern: str, symbol: bool) -> str:
    """A unit form as a regex on folded text: Latin/Cyrillic forms must start a word, symbols end one."""
    folded = _fold_pattern(pattern)
    left = _NOT_AFTER_LETTER if re.match(r"[a-z\u0430-\u044f]", folded) else ""
    return left + f"(?:{folded})" + (_NOT_BEFORE_LETTER if symbol else "")


@functools.cache
def _unit_after_res(lang: str) -> tuple[tuple[str, re.Pattern[str]], ...]:
    out = []
    for unit_id, unit in _UNITS.items():
        forms = [re.escape(s) for s in unit.symbols] + list(unit.words.get(lang, ()))
        local = unit.local_symbol.get(lang)
        if local:
            forms.append(re.escape(local))
        alternatives = "|".join(_fold_pattern(f) for f in forms)
        out.append((unit_id, re.compile(rf"[ {_THIN_SPACES}]?((?:{alternatives}){_NOT_BEFORE_LETTER})")))
    return tuple(out)


@functools.cache
def _unit_present_re(unit_id: str, lang: str) -> re.Pattern[str]:
    unit = _UNITS[unit_id]
    symbols = [*unit.symbols, *([unit.local_symbol[lang]] if lang in unit.local_symbol else [])]
    forms = [_form(re.escape(s), symbol=True) for s in symbols]
    forms += [_form(w, symbol=False) for w in (*unit.words.get(lang, ()), *unit.loose.get(lang, ()))]
    return re.compile("|".join(forms))


def _unit_after(folded: str, pos: int, lang: str) -> tuple[str, int, int] | None:
    for unit_id, pattern in _unit_after_res(lang):
        m = pattern.match(folded, pos)
        if m:
            return unit_id, m.start(1), m.end(1)
    return None


def _unit_before(folded: str, pos: int) -> tuple[str, int, int] | None:
    """A currency symbol (or 百分之) right before a number, with at most one space between."""
    end = pos - 1 if pos > 0 and folded[pos - 1] in " " + _THIN_SPACES else pos
    for unit_id, unit in _UNITS.items():
        for symbol in unit.before:
            if folded.startswith(symbol, end - len(symbol)) and end >= len(symbol):
                return unit_id, end - len(symbol), end
    return None


# -- names ------------------------------------------------------------------------------------------------


def _wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


_TOKEN = re.compile(r"[0-9A-Za-z\u00c0-\u024f]+(?:(?:['’\-]|(?<=\d)\.(?=\d))[0-9A-Za-z\u00c0-\u024f]+)*")
_ELISIONS = _wordset("l d j n s c m t qu lorsqu puisqu dell all nell dall sull un quell bell nessun")
_CONTRACTIONS = frozenset({"s", "d", "ll", "re", "ve", "m", "t"})
# Letters after a leading number that make it a number with a suffix, not a product name ("3rd", "10H30").
_NUMBER_SUFFIXES = _wordset("st nd rd th er re e eme o a h am pm km kg cm mm g min s ms x")
# Acronyms every language translates or respells ("OK" -> "d'accord", "US" -> "EE. UU.", "AI" -> "IA").
_ACRONYMS_TRANSLATED = _wordset("OK TV AM PM US USA UK EU UN AI DNA NATO UFO ID AIDS WHO")
_TITLES = _wordset(
    "mr mrs ms dr sir madam miss mister monsieur madame mademoiselle senor senora senorita don dona signor "
    "signore signora signorina senhor senhora prof professor doctor doktor st saint san santa sao god dieu "
    "dios dio deus captain doctor general colonel sergeant lieutenant officer detective agent king queen "
    "prince princess lord lady father mother sister brother uncle aunt president senator judge mayor chief "
    "boss coach master mama mamma maman papa"
)
# English capitalises these though they are translated words, not names to keep.
_NOT_NAMES_EN = _wordset(
    "monday tuesday wednesday thursday friday saturday sunday january february march april may june july "
    "august september october november december english french german spanish italian portuguese japanese "
    "chinese korean russian american british european canadian mexican brazilian indian african asian "
    "arabic arab dutch greek swiss irish scottish australian christian muslim jewish catholic buddhist hindu "
    "latin christmas easter halloween mom mum dad mommy daddy grandma grandpa granny earth"
)
_ABBREVIATIONS = _wordset("mr mrs ms dr st prof sr sra jr m mme mlle hr fr sig dott no nr vs")
# Names a Latin-script translation legitimately writes differently (exonyms): any member counts.
_EXONYMS = tuple(
    tuple(group.split("/"))
    for group in (
        "germany/deutschland/allemagne/alemania/germania/alemanha",
        "spain/spanien/espagne/espana/spagna/espanha",
        "japan/japon/giappone/japao",
        "china/chine/cina",
        "england/angleterre/inglaterra/inghilterra",
        "russia/russland/russie/rusia",
        "korea/coree/corea/coreia",
        "greece/griechenland/grece/grecia",
        "switzerland/schweiz/suisse/suiza/svizzera/suica",
        "netherlands/niederlande/pays-bas/paises bajos/paesi bassi/paises baixos"
        "/holland/hollande/holanda/olanda",
        "brazil/brasilien/bresil/brasil/brasile",
        "united states/usa/etats-unis/estados unidos/stati uniti/vereinigte staaten",
        "united kingdom/royaume-uni/reino unido/regno unito/vereinigtes konigreich/grossbritannien",
        "egypt/agypten/egypte/egipto/egitto/egito",
        "austria/osterreich/autriche",
        "sweden/schweden/suede/suecia/svezia",
        "europe/europa",
        "america/amerika/amerique",
        "africa/afrika/afrique",
        "asia/asien/asie",
        "mexico/mexiko/mexique/messico",
        "london/londres/londra",
        "munich/munchen/monaco di baviera",
        "vienna/wien/vienne/viena",
        "rome/rom/roma",
        "lisbon/lissabon/lisbonne/lisboa/lisbona",
        "moscow/moskau/moscou/moscu/mosca",
        "beijing/peking/pekin/pechino/pequim",
        "tokyo/tokio",
        "venice/venedig/venise/venecia/venezia/veneza",
        "florence/florenz/firenze/florencia",
        "naples/neapel/napoli/napoles",
        "cologne/koln/colonia",
        "geneva/genf/geneve/ginebra/ginevra/genebra",
        "paris/parigi",
        "milan/mailand/milano/milao",
        "athens/athen/athenes/atenas/atene",
        "prague/prag/praga",
        "warsaw/warschau/varsovie/varsovia/varsavia",
        "brussels/brussel/bruxelles/bruselas/bruxelas",
        "seville/sevilla/siviglia/sevilha",
    )
)
_EXONYM_GROUP = {name: group for group in _EXONYMS for name in group}
_ROMAN = re.compile(r"[IVX]+")
_OPENERS = "\"'“”„«»‹›‘’([¿¡-—–*♪ \t\n" + _THIN_SPACES


def is_strict_name(surface: str) -> bool:
    """Acronyms, mixed-case and digit-bearing names (GPU, iPhone, Qwen3, 4K): every one of our languages
    keeps them in Latin script, so they are checked in every translation."""
    letters = [ch for ch in surface if ch.isalpha()]
    if any(ch.isdigit() for ch in surface):
        return True
    if re.search(r"[a-zß-ÿ][A-ZÀ-Þ]", surface):
        return True
    return len(letters) >= 2 and all(ch.isupper() for ch in letters)


def _sentence_initial(text: str, start: int) -> bool:
    i = start - 1
    while i >= 0 and text[i] in _OPENERS:
        i -= 1
    if i < 0 or text[i + 1 : start].strip(" \t\n" + _THIN_SPACES):
        return True  # the line starts here, or a quotation or bracket does: 'He said, "Go home."'
    if text[i] not in ".!?…:":
        return False
    if text[i] == ".":
        before = re.search(r"([A-Za-z]+)$", text[:i])
        if before and _fold(before.group(1)) in _ABBREVIATIONS:
            return False
    return True


def _trim(token: str, start: int) -> tuple[str, int]:
    """Drop an elided article ("l'Italie", "dell'Europa") and a possessive or contraction ("Anna's")."""
    parts = re.split(r"['’]", token)
    if len(parts) > 1 and _fold(parts[0]) in _ELISIONS:
        start += len(parts[0]) + 1
        token = token[len(parts[0]) + 1 :]
        parts = parts[1:]
    if len(parts) > 1 and _fold(parts[-1]) in _CONTRACTIONS:
        token = token[: -len(parts[-1]) - 1]
    return token, start


def _names(text: str, source: str) -> tuple[list[tuple[int, Item]], list[tuple[int, int]]]:
    """Name items with their positions, and the spans of digit-bearing names (not numbers: "GPT-4")."""
    latin = source in LATIN_SCRIPT
    tokens = [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]
    words = [t for t, _, _ in tokens if sum(ch.isalpha() for ch in t) >= 2]
    shouting = latin and len(words) >= 3 and sum(w.upper() == w for w in words) >= 0.6 * len(words)
    found: list[tuple[int, Item]] = []
    masked: list[tuple[int, int]] = []
    run: list[tuple[str, int, int]] = []  # consecutive capitalised words: one multi-word name

    def close_run() -> None:
        if run:
            surface = text[run[0][1] : run[-1][2]]
            found.append((run[0][1], Item("name", surface, surface)))
            run.clear()

    for raw, raw_start, raw_end in tokens:
        token, start = _trim(raw, raw_start)
        end = start + len(token)
        if re.fullmatch(r"[A-Z]{2,}s", token):
            token, end = token[:-1], end - 1  # "GPUs" is the acronym GPU
        letters = [ch for ch in token if ch.isalpha()]
        if not letters or _fold(token) in _NUMBER_SUFFIXES:  # "5 km", "5 PM": a unit or a time, not a name
            close_run()
            continue
        if token[0].isdigit():
            suffix = _fold("".join(letters))
            if not any(ch.isupper() for ch in letters) or suffix in _NUMBER_SUFFIXES:
                close_run()
                continue  # "3rd", "10km": a number; "4K", "3D": a name
        strict = is_strict_name(token)
        acronym = (
            strict and not any(ch.isdigit() for ch in token) and not re.search(r"[a-zß-ÿ][A-ZÀ-Þ]", token)
        )
        if acronym and (shouting or token in _ACRONYMS_TRANSLATED or _ROMAN.fullmatch(token)):
            close_run()
            continue
        if strict:
            close_run()
            found.append((start, Item("name", token, token)))
            if any(ch.isdigit() for ch in token):
                masked.append((raw_start, raw_end))
            continue
        if len(letters) < 2 or _fold(token) in _TITLES:
            close_run()
            continue
        if latin:
            capitalised = token[0].isupper() and not shouting and source != "de"
            if (
                not capitalised
                or _sentence_initial(text, raw_start)
                or (source == "en" and _fold(token) in _NOT_NAMES_EN)
            ):
                close_run()
                continue
        if run and text[run[-1][2] : start] != " ":
            close_run()
        run.append((token, start, end))
    close_run()
    return found, masked


# -- protected items --------------------------------------------------------------------------------------

_TIME = re.compile(r"(?<![\d.,:])([01]?\d|2[0-3])(?::|[hH])([0-5]\d)(?![\d:])")
# An hour with its word: "20 h", "20 Uhr", "8 o'clock", "20時", "8点", "8시" (minutes optional).
_TIME_WORD = re.compile(
    r"(?<![\d.,:])([01]?\d|2[0-3])(?:[.:]([0-5]\d))? ?(?:h|uhr|heures?|o'clock|時|时|点|點|시)(?![A-Za-z\d])",
    re.IGNORECASE,
)
_TIME_12H = re.compile(r"(?<![\d.,:])(1[0-2]|0?[1-9])(?::([0-5]\d))? ?([aApP])(?:\.[mM]\.|[mM])(?![A-Za-z])")


def protected_items(text: str, source: str) -> list[Item]:
    """Numbers, units after (or currency before) them, and names in a source line, in order, each once.

    Numbers are read in digits only, under the source language's separators ("1.000" is a thousand in a
    German line, one in an English one); ordinals ("3rd", "3.", "3e") are their number; a clock time
    ("10:30", "10h30", "5 pm", "20 Uhr", "8時") is one item; "3 million" and "3万" are their full value.
    Names: in English, French, Spanish, Italian and Portuguese, capitalised words that do not start a
    sentence or quotation (consecutive ones are one name: "New York"); everywhere, acronyms and
    mixed-case or digit-bearing words (GPU, iPhone, Qwen3). German capitalises every noun, so only the
    latter count there. Other scripts have no case to go by, so only their embedded Latin-script words
    count ("我用Qwen3" -> Qwen3).
    """
    norm = _nfkc(text)
    names, name_spans = _names(norm, source)
    chars = list(norm)
    for start, end in name_spans:
        chars[start:end] = "_" * (end - start)
    found: list[tuple[int, Item]] = list(names)
    for m in _TIME_12H.finditer("".join(chars)):
        hour = int(m.group(1)) % 12 + (12 if m.group(3) in "pP" else 0)
        found.append((m.start(), Item("number", m.group(), f"{hour}:{m.group(2) or '00'}")))
        chars[m.start() : m.end()] = "_" * (m.end() - m.start())
    for m in _TIME_WORD.finditer("".join(chars)):
        found.append((m.start(), Item("number", m.group(), f"{int(m.group(1))}:{m.group(2) or '00'}")))
        chars[m.start() : m.end()] = "_" * (m.end() - m.start())
    for m in _TIME.finditer("".join(chars)):
        found.append((m.start(), Item("number", m.group(), f"{int(m.group(1))}:{m.group(2)}")))
        chars[m.start() : m.end()] = "_" * (m.end() - m.start())
    masked = "".join(chars)
    folded = _fold(masked)
    for m in _number_re(source).finditer(masked):
        start, end = m.start(), m.end()
        negative = start > 0 and masked[start - 1] in "-−" and (start < 2 or masked[start - 2] in " ([\t\n")
        values = _interpret(m.group(), source)
        if len(values) > 1:
            found.extend(
                (start, Item("number", g, _decimal_str(v)))
                for g, v in zip(re.split(r"\D", m.group()), values, strict=True)
            )
            continue
        value = -values[0] if negative else values[0]
        if negative:
            start -= 1
        before = _unit_before(folded, start)
        if before:
            unit_id, unit_start, unit_end = before
            found.append((unit_start, Item("unit", norm[unit_start:unit_end], unit_id)))
        unit = _unit_after(folded, end, source)
        if unit is None:
            factor, scale_end = _scale_after(folded, end, source)
            if factor != 1:
                value, end = value * factor, scale_end
                unit = _unit_after(folded, end, source)
        found.append((start, Item("number", norm[start:end], _decimal_str(value))))
        if unit:
            unit_id, unit_start, unit_end = unit
            found.append((unit_start, Item("unit", norm[unit_start:unit_end], unit_id)))
    found.sort(key=lambda pair: pair[0])
    return list(dict.fromkeys(item for _, item in found))


# -- what a translation contains --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Translation:
    lang: str
    text: str  # NFKC
    folded: str
    values: frozenset[Decimal]  # every number it writes, in digits, kanji, hangul or digits + scale word
    runs: frozenset[int]  # every run of digits, however glued ("10h30", "Qwen3"): for clock times


def _read_translation(translation: str, lang: str) -> _Translation:
    text = _nfkc(translation)
    folded = _fold(text)
    values: set[Decimal] = set()
    for m in _number_re(lang).finditer(text):
        found = _interpret(m.group(), lang)
        values.update(found)
        factor, _ = _scale_after(folded, m.end(), lang)
        if factor != 1 and len(found) == 1:
            values.add(found[0] * factor)  # "300万" is 3000000; the 300 stays too ("3千米" is 3 km)
    if lang in ("zh", "ja", "ko"):
        values |= _mixed_values(text)
    if lang in ("zh", "ja"):
        values |= _cjk_values(text, lang)
    elif lang == "ko":
        values |= _hangul_values(text)
    runs = frozenset(int(r) for r in re.findall(r"\d+", text))
    return _Translation(lang, text, folded, frozenset(abs(v) for v in values), runs)


def _int_present(n: int, t: _Translation) -> bool:
    if n in t.runs or Decimal(n) in t.values:
        return True
    return _words_present(Decimal(n), t)


def _words_present(value: Decimal, t: _Translation) -> bool:
    if not _spellable(value):
        return False
    n = int(value)
    if t.lang == "ko" and _korean_native_present(n, t.text):
        return True
    return any(p.search(t.folded) for p in _number_word_patterns(n, t.lang))


_HALF = re.compile(_fold_pattern(r"half|halb|demie|media|mezz[ao]|meia|половин|半|반"))
_QUARTER = re.compile(_fold_pattern(r"quarter|viertel|quart|cuarto|quarto|четверт|刻"))


def _time_present(value: str, t: _Translation) -> bool:
    """A clock time survives as its hour, or the same hour on the other half of the day ("5 pm" may well
    become "17 Uhr"), and its minutes in any form; "half"/"quarter" words stand for :30, :15 and :45, also
    counted from the next hour ("halb zehn" is 9:30, "Viertel vor zehn" 9:45); :00 needs nothing."""
    hour, minute = (int(part) for part in value.split(":"))
    fraction = bool(
        (minute == 30 and _HALF.search(t.folded)) or (minute in (15, 45) and _QUARTER.search(t.folded))
    )
    hours = {hour % 24, (hour + 12) % 24}
    if fraction and minute >= 30:
        hours |= {(hour + 1) % 24, (hour + 13) % 24}
    if not any(_int_present(h, t) or (h == 0 and _int_present(24, t)) for h in hours):
        return False
    return minute == 0 or fraction or _int_present(minute, t)


def _number_present(item: Item, t: _Translation) -> bool:
    if ":" in item.value:
        return _time_present(item.value, t)
    value = abs(Decimal(item.value))  # a sign is often a word ("minus", "零下"): compare magnitudes
    if value in t.values:
        return True
    if not re.fullmatch(r"[-−]?\d+", item.surface) and re.search(
        rf"(?<!\d){re.escape(item.surface.lstrip('-−'))}(?!\d)", t.text
    ):
        return True  # kept exactly as the source wrote it ("1.000" in a German line from a German source)
    return _words_present(value, t)


def _stem(word: str) -> str:
    return word if len(word) <= 4 else word[: max(4, len(word) - 2)]


def _name_form_present(name: str, folded: str) -> bool:
    """A folded name in a folded Latin text, each word by its stem so that inflections and near
    spellings count ("Paris'", "Annas", "Londres" for London)."""
    words = [w for w in re.split(r"[\s\-]+", name) if w]
    long_words = [w for w in words if len(w) >= 4] or words
    return all(re.search(rf"(?<![^\W\d_]){re.escape(_stem(w))}", folded) for w in long_words)


def _name_present(item: Item, t: _Translation) -> bool:
    if is_strict_name(item.surface):
        name = _fold(item.surface)
        return bool(re.search(rf"(?<![0-9a-z]){re.escape(name)}(?!\d)", t.folded))
    if t.lang not in LATIN_SCRIPT:
        return True  # transliterated in Cyrillic, kana, hangul or hanzi: nothing to compare
    name = _fold(item.surface)
    return any(_name_form_present(form, t.folded) for form in _EXONYM_GROUP.get(name, (name,)))


def _ignored(item: Item, ignore: list[str]) -> bool:
    surface = _fold(item.surface)
    return any(term == surface or re.search(rf"(?<!\w){re.escape(surface)}(?!\w)", term) for term in ignore)


def missing_items(
    source_text: str, translation: str, source: str, target: str, ignore: Iterable[str] = ()
) -> list[Item]:
    """The protected items of `source_text` that `translation` lost, in source order.

    A number counts as present in digits under the target's conventions (or as the source wrote it), in
    full-width digits, kanji (zh, ja) or hangul (ko, Sino-Korean and native) numerals, with a scale word
    ("300万", "3 Millionen"), or spelled out in the target language (num2words; numbers up to 1000 and
    round ones). A unit counts as its symbol or a word for it in the target language. A name is checked
    case-insensitively by its stem in Latin-script targets; in zh, ja, ko and ru targets names are
    transliterated, so only acronyms and mixed-case/digit names (GPU, iPhone, Qwen3) are checked there.
    Repeats are not counted: "3 and 3" is satisfied by one 3. `ignore`: source surfaces (glossary
    terms) checked elsewhere; an item inside one of them is skipped as well.
    """
    skip = [_fold(_nfkc(term)).strip() for term in ignore if term.strip()]
    t = _read_translation(translation, target)
    checks: dict[str, Callable[[Item, _Translation], bool]] = {
        "number": _number_present,
        "unit": lambda item, tr: bool(_unit_present_re(item.value, tr.lang).search(tr.folded)),
        "name": _name_present,
    }
    return [
        item
        for item in protected_items(source_text, source)
        if not _ignored(item, skip) and not checks[item.kind](item, t)
    ]


# -- keep terms -------------------------------------------------------------------------------------------


def _format_number(value: Decimal, target: str) -> str:
    group, decimal, space = _separators(target)
    if decimal == ",":
        group = " " if target in ("fr", "ru") else "."
    sign = "-" if value < 0 else ""
    whole, _, frac = _decimal_str(abs(value)).partition(".")
    if len(whole) > 3:
        whole = f"{int(whole):,}".replace(",", group)
    return sign + whole + (decimal + frac if frac else "")


def keep_terms(items: Iterable[Item], target: str) -> dict[str, str]:
    """Verbatim terms for re-asking a translator: {source surface: what the translation must contain}.

    Names as written; numbers in digits, unchanged when the source wrote bare digits, else in the target's
    separators ("1,000" -> "1.000" for German, "3.5" -> "3,5" for French, "3 million" -> "3,000,000");
    clock times as H:MM; units as the symbol the target writes (km, but км in Russian).
    """
    terms: dict[str, str] = {}
    for item in items:
        if item.kind == "unit":
            unit = _UNITS[item.value]
            terms[item.surface] = unit.local_symbol.get(target, item.value)
        elif item.kind == "number" and ":" not in item.value and not re.fullmatch(r"[-−]?\d+", item.surface):
            terms[item.surface] = _format_number(Decimal(item.value), target)
        else:
            terms[item.surface] = item.value if item.kind == "number" else item.surface
    return terms


# -- not a translation ------------------------------------------------------------------------------------


def _kind_re(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{_fold_pattern(p)})" for p in patterns))


_FIRST_SENTENCE = r"[^.!?。！？\n]*?"
# What an assistant's reply starts with instead of a translation (matched at the start, folded).
_APOLOGY_START = _kind_re(
    r"(?:i'?m|i am) (?:so |very |really |terribly )?sorry", r"sorry\b", "my apologies", r"i apologi[sz]e",
    r"es tut mir (?:sehr )?leid", r"entschuldigung\b", r"(?:je suis )?désolée?", "je m'excuse",
    "lo siento", "lo lamento", "mi dispiace", r"(?:sono )?spiacente", "mi scuso", "desculpe?",
    "sinto muito", "lamento", "извините", "простите", "к сожалению", r"мне (?:очень )?жаль",
    r"(?:很|非常)?抱歉", "对不起", "對不起", "不好意思", "申し訳", "すみません", "ごめんなさい",
    "残念ながら", "죄송", "미안",
)  # fmt: skip
_INABILITY = _kind_re(
    r"i (?:can't|cannot|can not|am unable to|'m unable to|am not able to|won't be able to)\b",
    r"ich kann\b.{0,30}\bnicht\b", r"ich bin (?:leider )?nicht in der lage",
    r"je ne (?:peux|suis pas en mesure)", r"no (?:puedo|me es posible|soy capaz)",
    r"non (?:posso|sono in grado|riesco)", r"não (?:posso|consigo)", r"(?:я )?не (?:могу|в состоянии)",
    r"我?(?:无法|不能|没法|没有办法|無法)",
    _FIRST_SENTENCE + r"(?:できません|できかねます|いたしかねます)",
    _FIRST_SENTENCE + r"(?:할 수 없|수 없습니다|드릴 수 없)",
)  # fmt: skip
# Refusals name the task or turn on "but": a line that merely says "I can't" does not.
_REFUSAL_CUE = _kind_re(
    r"translat|help|assist|comply|request|provide|fulfil|content|übersetz|helfen|anfrage|tradu",
    r"aider|demande|ayudar|solicitud|aiutare|richiesta|ajudar|solicitação|перев|помо|запрос",
    r"翻译|翻譯|翻訳|帮|協力|请求|内容|번역|도와|요청",
    r"\bbut\b|\baber\b|\bmais\b|\bpero\b|\bma\b|\bmas\b|\bно\b|但|が、|지만|无法|できません|수 없",
)  # fmt: skip
_AI_SELF = _kind_re(
    _FIRST_SENTENCE
    + r"(?:as an ai|as a language model|i am an ai|i'm an ai|als (?:ki|sprachmodell)|"
    r"en tant qu'(?:ia|intelligence artificielle|assistant|modèle)|"
    r"como (?:una? )?(?:ia|modelo de lenguaje)|como (?:uma? )?(?:ia|modelo de linguagem)|"
    r"come (?:un'?)?(?:ia|intelligenza artificiale|modello linguistico)|"
    r"как (?:ии|языковая модель|искусственный интеллект)|"
    r"作为(?:一个)?(?:ai|人工智能|语言模型|助手)|aiとして|言語モデルとして|"
    r"ai로서|언어 모델로서|인공지능으로서)"
)  # fmt: skip
_META_START = _kind_re(
    r"(?:here is|here's|this is) (?:the|your|a|my) translation", r"(?:the )?translation(?: is)? ?:",
    r"translated text ?:", r"voici (?:la|une) traduction", r"traduction ?:",
    r"aquí (?:está|tienes) la traducción", r"traducción ?:", r"hier ist die übersetzung",
    r"übersetzung ?:", "ecco la traduzione", r"traduzione ?:", "aqui está a tradução", r"tradução ?:",
    "вот перевод", r"перевод ?:", r"以下是(?:翻译|译文)", r"(?:翻译|译文) ?:", r"以下は(?:翻訳|訳)",
    r"翻訳 ?:", "다음은 번역", r"번역 ?:",
)  # fmt: skip
# The same kinds anywhere in a source line, in any language: then the translation is only translating it.
_SOURCE_KINDS: dict[str, re.Pattern[str]] = {
    "apology": _kind_re(
        r"sorry|apolog|excuse|forgive|pardon|regret|unfortunately|my bad|leid|entschuldig|verzeih",
        r"leider|désolé|malheureusement|siento|lament|perdón|perdon|disculp|dispiace|scus|spiacent",
        r"purtroppo|desculp|sinto muito|infelizmente|извин|прост|жаль|сожал",
        r"抱歉|对不起|對不起|不好意思|遗憾|申し訳|すみません|すいません|ごめん|すま|失礼|残念",
        r"죄송|미안|유감",
    ),
    "inability": _kind_re(
        r"can't|cannot|can not|unable|not able|couldn't|could not|won't|impossible",
        r"kann\b.{0,30}\bnicht|können\b.{0,30}\bnicht|nicht möglich|unmöglich",
        r"ne (?:peux|peut|pouvons|pourr)|pas pu|no (?:puedo|puede|podemos|pude|podr)|imposible",
        r"non (?:posso|può|riesco|pot)|impossibile|não (?:posso|consigo|pode|pod)|impossível",
        r"не (?:могу|может|можем|смог)|невозможно|нельзя",
        r"无法|不能|没法|沒法|不了|不到|不会|不敢|不行|できない|できません|無理|られない",
        r"[えけせてねへめれげぜでべぺ](?:ない|ません)|수 없|못",
    ),
    "ai": _kind_re(
        r"(?<![a-z])(?:ai|ia|ki)(?![a-z])|artificial|künstlich|language model|sprachmodell|assistant",
        r"ии|人工智能|言語モデル|인공지능|언어 모델",
    ),
    "meta": _kind_re(r"translat|traduc|traduz|übersetz|перевод|переве|翻译|翻譯|翻訳|번역"),
}  # fmt: skip
_REASONS = {
    "ai": "an AI-assistant answer instead of a translation",
    "refusal": "a refusal instead of a translation",
    "meta": "a comment about the translation instead of one",
}


def _untranslated(source_text: str, translation: str) -> bool:
    a, b = (re.sub(r"\s+", "", _nfkc(s).casefold()) for s in (source_text, translation))
    if a != b:
        return False
    words = re.findall(r"[^\W\d_]+", "".join(" " if is_wide(ch) else ch for ch in _nfkc(source_text)))
    if all(w[0].isupper() for w in words) and words:
        return False  # only names ("Tom Hanks, Meg Ryan"): the same in every Latin-script language
    return len(words) >= 4 or sum(map(is_wide, source_text)) >= 12


def refusal_reason(source_text: str, translation: str, source: str | None, target: str) -> str | None:
    """Why `translation` is not a translation of `source_text`, in one phrase, or None.

    Empty output (for a source with words), only punctuation, an assistant's refusal, AI self-reference
    or comment about the translation (a phrase of that kind at the start of the reply that the source
    does not contain in any language, so "Lo siento, no puedo ir." for "I'm sorry, I can't come." is a
    translation), or the source returned unchanged (4+ words or 12+ CJK characters; not when the source
    language is unknown, nor when the line is only names).
    """
    has_words = any(ch.isalnum() for ch in source_text)
    if not translation.strip():
        return "empty translation" if has_words else None
    if has_words and not any(ch.isalnum() for ch in translation):
        return "only punctuation, no words"
    head = _fold(_nfkc(translation)).lstrip("\"'“”„«»‹›¿¡-—–*♪ \t\n" + _THIN_SPACES)[:200]
    src = _fold(_nfkc(source_text))
    if _AI_SELF.match(head) and not _SOURCE_KINDS["ai"].search(src):
        return _REASONS["ai"]
    if _META_START.match(head) and not _SOURCE_KINDS["meta"].search(src):
        return _REASONS["meta"]
    kinds = {"apology"} if _APOLOGY_START.match(head) else set()
    if _INABILITY.match(head) or (kinds and _INABILITY.search(head[:150])):
        kinds.add("inability")
    unexplained = {kind for kind in kinds if not _SOURCE_KINDS[kind].search(src)}
    if unexplained and _REFUSAL_CUE.search(head[:150]):
        return _REASONS["refusal"]
    if source is not None and source != target and _untranslated(source_text, translation):
        return "untranslated (same as the source)"
    return None
