"""What both DashScope adapters share: region hosts, the API key, and error classification.

The SDK (dashscope 2.0.2) returns HTTP errors as a response object with `status_code`/`code`/`message`
instead of raising; transport failures (connection refused, timeouts) raise requests' exceptions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from models.errors import InputError, UpstreamError

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
    {"Throttling.AllocationQuota", "Arrearage", "BillOverdue", "Throttling.BillOverdue", "AccessDenied.Unpurchased"}
)
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def is_transient(status: int | None, code: str) -> bool:
    """Retry only what may succeed later: 408, 429 throttling, 5xx; never 4xx input errors or billing."""
    if code in NON_TRANSIENT_CODES or code.endswith(("BillOverdue", "AllocationQuota")):
        return False
    return status in TRANSIENT_STATUSES


def upstream_error(what: str, status: int | None, code: str, request_id: str = "") -> UpstreamError:
    """One line naming the call, the HTTP status and the service's error code (never the message body,
    which may quote the request text)."""
    rid = f", request {request_id}" if request_id else ""
    return UpstreamError(
        f"{what} failed: HTTP {status} {code or 'error'}{rid}",
        code=code,
        status=status,
        transient=is_transient(status, code),
    )
