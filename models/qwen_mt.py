"""Qwen-MT translation through the dashscope SDK (`Generation.call` with `translation_options`).

Qwen-MT takes exactly one user message (no system prompt); languages are given by English name.
"""

from __future__ import annotations

from typing import Any

from models.dashscope_common import DashScopeTextClient
from models.languages import Language
from models.retry import RetryPolicy, call_with_retries

DEFAULT_MT_MODEL = "qwen-mt-flash"
QWEN_MT_MODELS = ("qwen-mt-flash", "qwen-mt-plus", "qwen-mt-lite", "qwen-mt-turbo")


class QwenMTTranslator(DashScopeTextClient):
    route = "api"

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
    ) -> None:
        super().__init__(
            model=model, region=region, rpm=rpm, concurrency=concurrency, retry=retry, require_key=require_key
        )
        self.terms = terms or {}  # target code -> {source term: target term}
        self.domain = domain

    def identity(self) -> dict[str, Any]:
        return {"route": self.route, "model": self.model, "terms": self.terms, "domain": self.domain or ""}

    def translate(self, text: str, source: Language | None, target: Language) -> str:
        return call_with_retries(lambda: self._request(text, source, target), self.retry)

    def _request(self, text: str, source: Language | None, target: Language) -> str:
        options: dict[str, Any] = {
            "source_lang": source.name if source else "auto",
            "target_lang": target.name,
        }
        terms = self.terms.get(target.code)
        if terms:
            options["terms"] = [{"source": s, "target": t} for s, t in terms.items()]
        if self.domain:
            options["domains"] = self.domain
        # one user message only: Qwen-MT rejects a system prompt
        return self._generate("translation", [{"role": "user", "content": text}], translation_options=options)
