"""What both DashScope adapters share: region hosts, the API key, and error classification.

The SDK (dashscope 2.0.2) returns HTTP errors as a response object with `status_code`/`code`/`message`
instead of raising; transport failures (connection refused, timeouts) raise requests' exceptions.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from core.errors import InputError, UpstreamError

Region = Literal["intl", "cn"]

REGION_HOSTS: dict[str, str] = {
    "intl": "dashscope-intl.aliyuncs.com",  # International (Singapore)
    "cn": "dashscope.aliyuncs.com",  # Mainland China (Beijing)
}
API_KEY_ENV = "DASHSCOPE_API_KEY"


@dataclass(frozen=True)
class Endpoint:
    """Base URLs for one region; the SDK's own environment variables override each one."""

    http_base_url: str
    compatible_base_url: str
    websocket_base_url: str

    @classmethod
    def for_region(cls, region: str) -> Endpoint:
        host = REGION_HOSTS[region]
        return cls(
            http_base_url=os.environ.get("DASHSCOPE_HTTP_BASE_URL") or f"https://{host}/api/v1",
            compatible_base_url=os.environ.get("DASHSCOPE_COMPATIBLE_BASE_URL")
            or f"https://{host}/compatible-mode/v1",
            websocket_base_url=os.environ.get("DASHSCOPE_WEBSOCKET_BASE_URL")
            or f"wss://{host}/api-ws/v1/inference",
        )


def api_key_from_env() -> str:
    """The key comes from the environment only; it is never logged, stored in config or written."""
    key = os.environ.get(API_KEY_ENV, "").strip()
    if not key:
        raise InputError(
            f"{API_KEY_ENV} is not set: the DashScope route needs an API key from Model Studio "
            "(export it in the environment; it is never read from a file or flag)"
        )
    return key


# Codes that a retry cannot fix even though their HTTP status is 429/5xx: quota and billing.
NON_TRANSIENT_CODES = frozenset(
    {
        "Throttling.AllocationQuota",
        "Arrearage",
        "BillOverdue",
        "Throttling.BillOverdue",
        "AccessDenied.Unpurchased",
    }
)
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def is_transient(status: int | None, code: str) -> bool:
    """Retry only what may succeed later: 408, 429 throttling, 5xx; never 4xx input errors or billing."""
    if code in NON_TRANSIENT_CODES or code.endswith(("BillOverdue", "AllocationQuota")):
        return False
    return status in TRANSIENT_STATUSES


def retry_after_seconds(headers: object) -> float | None:
    """Retry-After (seconds form) from the SDK's response.headers, a case-sensitive plain dict."""
    if not isinstance(headers, dict):
        return None
    for name, value in headers.items():
        if str(name).lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return None  # the HTTP-date form: fall back to our own backoff
    return None


def upstream_error(what: str, response: Any) -> UpstreamError:
    """From an SDK error response: one line naming the call, the HTTP status and the service's error
    code (never the service's message, which may quote the request text)."""
    status = getattr(response, "status_code", None)
    code = getattr(response, "code", "") or ""
    request_id = getattr(response, "request_id", "") or ""
    rid = f", request {request_id}" if request_id else ""
    detail = f"HTTP {status} {code or 'error'}{rid}"
    return UpstreamError(
        f"{what} failed: {detail}",
        detail=detail,
        code=code,
        status=status,
        transient=is_transient(status, code),
        retry_after_s=retry_after_seconds(getattr(response, "headers", None)),
    )


class DashScopeTextClient:
    """What the text-generation adapters share (Qwen-MT, the shortening chat model): region endpoint,
    account-wide pacing, retry policy, the key checked up front, and one paced `Generation.call` that
    returns the reply text or raises a classified UpstreamError."""

    def __init__(
        self,
        *,
        model: str,
        region: str,
        rpm: int,
        concurrency: int,
        retry: Any,
        require_key: bool,
        journal: Path | None = None,
    ) -> None:
        """`journal`: the folder where every reply is written down before it is used (core/journal.py), so a
        job killed and resumed pays for no reply twice; None: no journal."""
        from core.journal import journal_at
        from core.retry import RetryPolicy
        from models.pacing import global_limit_name, shared_limiter

        self.journal = journal_at(journal) if journal is not None else None
        self._last_reply = threading.local()  # this thread's last reply key (forget_last_reply)
        self.model = model
        self.region = region
        self.endpoint = Endpoint.for_region(region)
        self.retry = retry or RetryPolicy()
        # Qwen-MT and the shortening chat model both answer to the MT global rate limit, if one is named
        self.limiter = shared_limiter(
            self.endpoint.http_base_url, model, rpm, concurrency, global_limit_name("mt")
        )
        # checked at construction so a job fails before work; dry runs (cost estimates) need no key
        self._api_key = api_key_from_env() if require_key else None

    def retire_last_reply(self) -> None:
        """The reply this thread got last is stored (translation cache) or rejected (a refusal, no
        translation): it is retired from the journal, which keeps only replies a crash could lose (and
        never hands a rejected one back to a re-run)."""
        key = getattr(self._last_reply, "key", None)
        if self.journal is not None and key is not None:
            self.journal.retire(key)

    def _generate(self, what: str, messages: list[dict[str, str]], **options: Any) -> str:
        from dashscope import Generation  # lazy: keeps --help fast

        from core.files import content_key

        key = content_key("text-answer", self.endpoint.http_base_url, self.model, messages, options)
        self._last_reply.key = key
        earlier = self.journal.lookup(key) if self.journal is not None else None
        if earlier is not None and isinstance(earlier.get("text"), str) and earlier["text"].strip():
            return str(earlier["text"]).strip()  # paid for by a run that was killed before using it
        with self.limiter.slot():
            response: Any = Generation.call(
                model=self.model,
                api_key=self._api_key or api_key_from_env(),
                messages=messages,  # type: ignore[arg-type]
                result_format="message",
                base_address=self.endpoint.http_base_url,
                **options,
            )
        if response.status_code != 200:
            raise upstream_error(what, response)
        try:
            content = response.output.choices[0].message.content
        except (AttributeError, IndexError, KeyError, TypeError):
            content = None
        if not isinstance(content, str) or not content.strip():
            raise UpstreamError(f"{what} came back empty", code="EmptyTranslation")
        if self.journal is not None:  # written down before it is checked, cached or used
            self.journal.record(key, "text", text=content, request_id=response.request_id or "")
        return content.strip()
