"""Qwen-MT translation through the dashscope SDK (`Generation.call` with `translation_options`).

Qwen-MT takes exactly one user message (no system prompt); languages are given by English name.
"""

from __future__ import annotations

from typing import Any

from models.dashscope_common import Endpoint, api_key_from_env, upstream_error
from models.errors import UpstreamError
from models.languages import Language
from models.pacing import shared_limiter
from models.retry import RetryPolicy, call_with_retries

DEFAULT_MT_MODEL = "qwen-mt-flash"
QWEN_MT_MODELS = ("qwen-mt-flash", "qwen-mt-plus", "qwen-mt-lite", "qwen-mt-turbo")


class QwenMTTranslator:
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
        self.model = model
        self.region = region
        self.endpoint = Endpoint.for_region(region)
        self.retry = retry or RetryPolicy()
        self.limiter = shared_limiter(self.endpoint.http_base_url, model, rpm, concurrency)
        self.terms = terms or {}  # target code -> {source term: target term}
        self.domain = domain
        # checked at construction so a job fails before work; dry runs (cost estimates) need no key
        self._api_key = api_key_from_env() if require_key else None

    def identity(self) -> dict[str, Any]:
        return {"route": self.route, "model": self.model, "terms": self.terms, "domain": self.domain or ""}

    def translate(self, text: str, source: Language | None, target: Language) -> str:
        return call_with_retries(lambda: self._request(text, source, target), self.retry)

    def _request(self, text: str, source: Language | None, target: Language) -> str:
        from dashscope import Generation  # lazy: keeps --help fast

        options: dict[str, Any] = {
            "source_lang": source.name if source else "auto",
            "target_lang": target.name,
        }
        terms = self.terms.get(target.code)
        if terms:
            options["terms"] = [{"source": s, "target": t} for s, t in terms.items()]
        if self.domain:
            options["domains"] = self.domain
        with self.limiter.slot():
            response: Any = Generation.call(
                model=self.model,
                api_key=self._api_key or api_key_from_env(),
                messages=[{"role": "user", "content": text}],  # type: ignore[list-item]
                translation_options=options,
                result_format="message",
                base_address=self.endpoint.http_base_url,
            )
        if response.status_code != 200:
            raise upstream_error("translation", response)
        try:
            content = response.output.choices[0].message.content
        except (AttributeError, IndexError, KeyError, TypeError):
            content = None
        if not isinstance(content, str) or not content.strip():
            raise UpstreamError("translation came back empty", code="EmptyTranslation")
        return content.strip()
