"""User-facing errors: each carries one line a user can act on (never script text, never the key)."""

from __future__ import annotations


class DubError(Exception):
    """Base class: the CLI prints `error: <message>` and exits with `exit_code`, no traceback."""

    exit_code = 1


class InputError(DubError):
    """The input video, a file the user passed, or the environment is not usable."""

    exit_code = 2


class ConfigError(DubError):
    """An option value is invalid (unknown language, voice, model...)."""

    exit_code = 2


class UpstreamError(DubError):
    """A remote service refused or failed a request after the retries it deserved."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        status: int | None = None,
        transient: bool = False,
        retry_after_s: float | None = None,
        detail: str | None = None,
    ):
        super().__init__(message)
        self.detail = detail or message  # the part without "<what> failed:", for callers that re-word it
        self.code = code
        self.status = status
        self.transient = transient
        self.retry_after_s = retry_after_s


class MissingToolError(DubError):
    """A required system program (ffmpeg, ffprobe, rubberband) is not installed."""

    exit_code = 2
