"""The translation stage around the engines: Qwen-MT's context (tm_list per scene) through the real SDK
against the loopback server, and, with stub engines at the Translator interface, the checks every
translation passes (numbers, units and names kept; refusals and non-translations fail naming the line)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from core.errors import UpstreamError
from core.languages import Language, get_language
from core.retry import RetryPolicy
from models.qwen_mt import DEFAULT_DOMAIN, QwenMTTranslator
from tasks.segment import Line
from tasks.translate import (
    SCENE_BREAK_S,
    SCENE_MAX_LINES,
    TranslationCache,
    cached_translations,
    scenes,
    translate_lines,
)
from tests.loopback_dashscope import LoopbackDashScope

EN, JA, DE = get_language("en"), get_language("ja"), get_language("de")
FAST = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.02)


def plan(texts: list[str], gaps: list[float] | None = None) -> list[Line]:
    """Lines of 1.5 s each; gaps[i] is the silence before line i (default 0.3 s)."""
    lines, t = [], 0.0
    for i, text in enumerate(texts):
        t += (gaps[i] if gaps else 0.3) if i else 0.0
        lines.append(Line(i, t, t + 1.5, text))
        t += 1.5
    for a, b in zip(lines, lines[1:], strict=False):
        a.pause_after = round(b.start - a.end, 3)
    return lines


# ------------------------------------------------------------------------------------------- scenes


def test_scenes_break_at_long_pauses_and_at_the_length_cap() -> None:
    lines = plan([f"Line {i}." for i in range(5)], gaps=[0, 0.3, SCENE_BREAK_S + 0.1, 0.3, 0.3])
    assert scenes(lines) == [[0, 1], [2, 3, 4]]
    long_scene = plan([f"Line {i}." for i in range(SCENE_MAX_LINES + 3)])
    assert [len(s) for s in scenes(long_scene)] == [SCENE_MAX_LINES, 3]


# ---------------------------------------------------------------------------------- Qwen-MT context


def test_qwen_mt_sees_the_previous_lines_of_the_scene_as_translation_memory(
    dashscope_server: LoopbackDashScope, tmp_path: Path
) -> None:
    texts = [
        "Anna opens the door.",
        "She sees the sea.",
        "It is calm today.",
        "Later, at the harbour.",
        "Boats.",
    ]
    lines = plan(texts, gaps=[0, 0.3, 0.3, SCENE_BREAK_S + 0.5, 0.3])
    out, stats = translate_lines(
        lines, EN, JA, QwenMTTranslator(retry=FAST), TranslationCache(tmp_path), workers=4
    )
    assert stats["calls"] == 5 and [ln.index for ln in out] == [0, 1, 2, 3, 4]
    requests = {r.body["input"]["messages"][0]["content"]: r.body for r in dashscope_server.requests_of("mt")}
    for body in requests.values():  # one user message, the languages by English name, the style hint
        assert [m["role"] for m in body["input"]["messages"]] == ["user"]
        options = body["parameters"]["translation_options"]
        assert (options["source_lang"], options["target_lang"]) == ("English", "Japanese")
        # the style hint, then the line's length budget (characters that fit its slot)
        assert options["domains"].startswith(DEFAULT_DOMAIN + " Keep the translation within ")
    translated = {ln.source: ln.text for ln in out}

    def memory(text: str) -> list[dict[str, str]]:
        return requests[text]["parameters"]["translation_options"].get("tm_list", [])

    assert memory(texts[0]) == [] and memory(texts[3]) == []  # a scene's first line has no context
    assert memory(texts[1]) == [{"source": texts[0], "target": translated[texts[0]]}]
    assert memory(texts[2]) == [  # the two lines before, oldest first, with what they became
        {"source": texts[0], "target": translated[texts[0]]},
        {"source": texts[1], "target": translated[texts[1]]},
    ]
    assert memory(texts[4]) == [{"source": texts[3], "target": translated[texts[3]]}]

    # a re-run is served from the cache, and the cost estimate finds the same entries
    again, stats = translate_lines(lines, EN, JA, QwenMTTranslator(retry=FAST), TranslationCache(tmp_path), 4)
    assert stats["calls"] == 0 and [ln.text for ln in again] == [ln.text for ln in out]
    cached = cached_translations(lines, EN, JA, QwenMTTranslator(retry=FAST), TranslationCache(tmp_path), {})
    assert cached == [ln.text for ln in out]


def test_a_users_own_translation_is_context_for_the_next_line(
    dashscope_server: LoopbackDashScope, tmp_path: Path
) -> None:
    lines = plan(["Good morning.", "How are you?"])
    out, _ = translate_lines(
        lines, EN, JA, QwenMTTranslator(retry=FAST), TranslationCache(tmp_path), 2, known={0: "おはよう。"}
    )
    assert [ln.index for ln in out] == [1]  # the known line is not translated
    (request,) = dashscope_server.requests_of("mt")
    options = request.body["parameters"]["translation_options"]
    assert options["tm_list"] == [{"source": "Good morning.", "target": "おはよう。"}]


def test_a_domain_hint_replaces_the_default(dashscope_server: LoopbackDashScope, tmp_path: Path) -> None:
    mt = QwenMTTranslator(retry=FAST, domain="Cooking show, informal.")
    translate_lines(plan(["Add salt."]), EN, DE, mt, TranslationCache(tmp_path), 1)
    (request,) = dashscope_server.requests_of("mt")
    domains = request.body["parameters"]["translation_options"]["domains"]
    assert domains.startswith("Cooking show, informal. Keep the translation within ")


# ------------------------------------------------------------------------------- checks, stub engines


class Scripted:
    """A Translator whose answers the test writes: `answer(text, keep)` -> translation; every call is
    recorded with its context and keep terms."""

    route = "api"

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.calls: list[dict[str, Any]] = []

    def identity(self) -> dict[str, Any]:
        return {"route": "stub", "answer": id(self.answer)}

    def translate(
        self,
        text: str,
        source: Language | None,
        target: Language,
        context: Sequence[tuple[str, str]] = (),
        keep: Mapping[str, str] | None = None,
    ) -> str:
        self.calls.append({"text": text, "context": list(context), "keep": dict(keep or {})})
        return str(self.answer(text, dict(keep or {})))


def test_a_lost_number_gets_one_retry_that_asks_for_it(tmp_path: Path) -> None:
    def answer(text: str, keep: dict[str, str]) -> str:
        return "Der Zug fährt um 7 Uhr, 12 km entfernt." if keep else "Der Zug fährt früh, weit weg."

    engine = Scripted(answer)
    lines = plan(["The train leaves at 7, 12 km away."])
    (line,), stats = translate_lines(lines, EN, DE, engine, TranslationCache(tmp_path), 1)
    assert [c["keep"] for c in engine.calls] == [{}, {"7": "7", "12": "12", "km": "km"}]
    assert line.text == "Der Zug fährt um 7 Uhr, 12 km entfernt." and line.unkept == []
    assert stats == {"calls": 2, "cached": 0, "copied": 0, "keep_retries": 1}
    # both answers are cached: the re-run and the estimate pick the retried one without a call
    again, stats = translate_lines(lines, EN, DE, engine, TranslationCache(tmp_path), 1)
    assert again[0].text == line.text and stats["calls"] == 0 and len(engine.calls) == 2
    assert cached_translations(lines, EN, DE, engine, TranslationCache(tmp_path), {}) == [line.text]


def test_what_never_survives_is_recorded_on_the_line_not_forced_twice(tmp_path: Path) -> None:
    engine = Scripted(lambda text, keep: "Der Zug fährt früh.")
    (line,), stats = translate_lines(
        plan(["The train leaves at 7."]), EN, DE, engine, TranslationCache(tmp_path), 1
    )
    assert len(engine.calls) == 2  # the first answer and one retry, no more
    assert line.text == "Der Zug fährt früh." and line.unkept == ["7"]


def test_an_ordinary_name_is_reported_but_never_forced(tmp_path: Path) -> None:
    """London may legitimately become Londres: a retry demanding 'London' verbatim would make it worse."""
    engine = Scripted(lambda text, keep: "Wir fahren morgen in die Hauptstadt.")
    (line,), _ = translate_lines(
        plan(["We go to London tomorrow."]), EN, DE, engine, TranslationCache(tmp_path), 1
    )
    assert len(engine.calls) == 1 and line.unkept == ["London"]


def test_glossary_terms_are_not_checked_twice(tmp_path: Path) -> None:
    engine = Scripted(lambda text, keep: "Wir fahren mit dem Schnellzug.")
    (line,), _ = translate_lines(
        plan(["We take the TGV."]), EN, DE, engine, TranslationCache(tmp_path), 1, terms={"TGV": "Schnellzug"}
    )
    assert len(engine.calls) == 1 and line.unkept == []


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("I'm sorry, but I can't translate that.", "a refusal instead of a translation"),
        ("   ", "empty translation"),
        ("...", "only punctuation, no words"),
        ("The weather is lovely in the mountains today.", "untranslated (same as the source)"),
    ],
)
def test_a_translation_that_is_not_one_fails_naming_the_line(
    tmp_path: Path, answer: str, reason: str
) -> None:
    engine = Scripted(lambda text, keep: answer if text.startswith("The weather") else "Guten Morgen.")
    lines = plan(["Good morning.", "The weather is lovely in the mountains today."])
    cache = TranslationCache(tmp_path)
    with pytest.raises(UpstreamError) as info:
        translate_lines(lines, EN, DE, engine, cache, 1)
    assert str(info.value).startswith(f"translation of line 1 (de) is not usable: {reason}")
    assert "lines.de.json" in str(info.value)
    # nothing unusable was cached: a re-run asks again
    engine.answer = lambda text, keep: "Guten Morgen." if text.startswith("Good") else "Das Wetter ist schön."
    out, _ = translate_lines(lines, EN, DE, engine, cache, 1)
    assert out[1].text == "Das Wetter ist schön."


def test_an_apology_in_the_source_is_translated_not_refused(tmp_path: Path) -> None:
    engine = Scripted(lambda text, keep: "Es tut mir leid, ich kann nicht kommen.")
    (line,), _ = translate_lines(
        plan(["I'm sorry, I can't come."]), EN, DE, engine, TranslationCache(tmp_path), 1
    )
    assert line.text == "Es tut mir leid, ich kann nicht kommen."
