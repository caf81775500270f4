"""Qwen-MT translation through the dashscope SDK (`Generation.call` with `translation_options`).

Qwen-MT takes exactly one user message (no system prompt); languages are given by English name. What
else it knows comes through translation_options: `terms` (glossary, plus the numbers and names a retry
must keep), `tm_list` (translation memory: the previous lines of the scene with their translations, our
way of showing it the neighbouring lines) and `domains` (an English style hint).

The length budget. Qwen-MT has no length parameter; `domains` is the only free-text field it reads, so
each line's budget (characters that fit its slot at the target language's pace, text/speech_rate.py)
is appended to the style hint as one English sentence. What the real service does with a number in
`domains` is not documented (UNCONFIRMED: it is described as a domain/style description, and may be
followed loosely or not at all), so it is a hint, not a guarantee: the translation stage checks every
line's predicted length afterwards and has overlong ones rewritten by the chat model before any
synthesis (tasks/translate.py, fit_before_synthesis).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from core.languages import Language
from core.retry import RetryPolicy, call_with_retries
from models.dashscope_common import DashScopeTextClient
from models.registry import API

DEFAULT_MT_MODEL = "qwen-mt-flash"
# The style hint sent as translation_options.domains (Qwen-MT wants it in English): dubbing needs spoken,
# concise lines, and the service has no other way to hear about the time budget.
DEFAULT_DOMAIN = (
    "Spoken dialogue and narration from a video, translated for dubbing: natural, conversational, "
    "consistent with the previous lines, and no longer than the original when spoken."
)
QWEN_MT_MODELS = ("qwen-mt-flash", "qwen-mt-plus", "qwen-mt-lite", "qwen-mt-turbo")


def budget_hint(max_chars: int) -> str:
    return f"Keep the translation within {max_chars} characters so it can be spoken in the same time."


class QwenMTTranslator(DashScopeTextClient):
    takes_budget = True  # translate() accepts max_chars (sent in translation_options.domains)

    def __init__(
        self,
        *,
        model: str = DEFAULT_MT_MODEL,
        region: str = "intl",
        rpm: int = 60,
        concurrency: int = 4,
        retry: RetryPolicy | None = None,
        require_key: bool = True,
        terms: dict[str, dict[str, str]] | None = None,
        domain: str | None = None,
        route: str = API,
        journal: Path | None = None,
    ) -> None:
        super().__init__(
            model=model, region=region, rpm=rpm, concurrency=concurrency, retry=retry,
            require_key=require_key, journal=journal,
        )  # fmt: skip
        self.route = route
        self.terms = terms or {}  # target code -> {source term: target term}
        self.domain = DEFAULT_DOMAIN if domain is None else domain.strip()

    def identity(self) -> dict[str, Any]:
        return {"route": self.route, "model": self.model, "terms": self.terms, "domain": self.domain or ""}

    def translate(
        self,
        text: str,
        source: Language | None,
        target: Language,
        context: Sequence[tuple[str, str]] = (),
        keep: Mapping[str, str] | None = None,
        max_chars: int | None = None,
    ) -> str:
        """`context`: (source, translation) pairs of the lines just before, oldest first (sent as tm_list).
        `keep`: extra terms for this line only (source -> required target), e.g. numbers and names a first
        translation lost. `max_chars`: the line's length budget (a hint in `domains`, see above)."""
        return call_with_retries(
            lambda: self._request(text, source, target, context, keep, max_chars), self.retry
        )

    def _request(
        self,
        text: str,
        source: Language | None,
        target: Language,
        context: Sequence[tuple[str, str]] = (),
        keep: Mapping[str, str] | None = None,
        max_chars: int | None = None,
    ) -> str:
        options: dict[str, Any] = {
            "source_lang": source.name if source else "auto",
            "target_lang": target.name,
        }
        terms = {**self.terms.get(target.code, {}), **(keep or {})}
        if terms:
            options["terms"] = [{"source": s, "target": t} for s, t in terms.items()]
        memory = [{"source": s, "target": t} for s, t in context if s.strip() and t.strip()]
        if memory:
            options["tm_list"] = memory
        domains = " ".join(p for p in (self.domain, budget_hint(max_chars) if max_chars else "") if p)
        if domains:
            options["domains"] = domains
        # one user message only: Qwen-MT rejects a system prompt
        return self._generate("translation", [{"role": "user", "content": text}], translation_options=options)
