"""Shorter versions of a translated line, for lines whose dub would need more speed-up than the cap.

API route: a Qwen chat model through DashScope (`Generation.call`, default qwen-flash), asked to
rewrite the line within a character budget. Qwen-MT itself takes no length instruction, which is why
the rewrite goes to a general chat model. Local route: the local translator re-translates the source
with the tighter budget in its prompt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from core.errors import UpstreamError
from core.languages import Language
from core.retry import RetryPolicy, call_with_retries
from models.dashscope_common import DashScopeTextClient
from models.registry import API

DEFAULT_SHORTEN_MODEL = "qwen-flash"
PROMPT_VERSION = "shorten-v1"
SYSTEM_PROMPT = (
    "You edit dubbing scripts. Rewrite the line so it can be spoken in less time: at most the given "
    "number of characters, same language, same meaning, keeping names, numbers and register. Drop filler "
    "words first, then rephrase. Reply with the rewritten line only."
)


class Shortener(Protocol):
    def identity(self) -> dict[str, Any]: ...

    def shorten(
        self, source_text: str, text: str, source: Language | None, target: Language, max_chars: int
    ) -> str: ...


def shorten_prompt(
    source_text: str, text: str, source: Language | None, target: Language, max_chars: int
) -> str:
    return "\n".join(
        [
            f"Original ({source.name if source else 'source language'}): {source_text}",
            f"Language of the line: {target.name}",
            f"Maximum length: {max_chars} characters",
            f"Text: {text}",
        ]
    )


def clean_reply(reply: str) -> str:
    text = reply.strip().strip("\"'“”「」『』").strip()
    for label in ("Text:", "Rewritten line:", "Line:"):
        if text.startswith(label):
            text = text[len(label) :].strip()
    return " ".join(text.split())


class DashScopeShortener(DashScopeTextClient):
    def __init__(
        self,
        *,
        model: str = DEFAULT_SHORTEN_MODEL,
        region: str = "intl",
        rpm: int = 60,
        concurrency: int = 4,
        retry: RetryPolicy | None = None,
        require_key: bool = True,
        route: str = API,
        journal: Path | None = None,
    ) -> None:
        self.route = route
        super().__init__(
            model=model, region=region, rpm=rpm, concurrency=concurrency, retry=retry,
            require_key=require_key, journal=journal,
        )  # fmt: skip

    def identity(self) -> dict[str, Any]:
        return {"route": self.route, "model": self.model, "prompt": PROMPT_VERSION}

    def shorten(
        self, source_text: str, text: str, source: Language | None, target: Language, max_chars: int
    ) -> str:
        prompt = shorten_prompt(source_text, text, source, target, max_chars)
        return call_with_retries(lambda: self._request(prompt), self.retry)

    def _request(self, prompt: str) -> str:
        messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]
        text = clean_reply(self._generate("shortening", messages))
        if not text:
            raise UpstreamError("shortening came back empty", code="EmptyTranslation")
        return text


class LocalRetranslateShortener:
    """Re-translate the source with the tighter budget in the local LLM's prompt."""

    def __init__(self, translator: Any) -> None:
        self.translator = translator
        self.route = str(translator.route)

    def identity(self) -> dict[str, Any]:
        return {"route": self.route, "translator": self.translator.identity()}

    def shorten(
        self, source_text: str, text: str, source: Language | None, target: Language, max_chars: int
    ) -> str:
        from models.local_translator import TranslationItem

        return str(
            self.translator.translate_batch(
                [TranslationItem(source_text, max_chars=max_chars)], source, target
            )[0]
        )
