"""What the studio's tests share: a job made by the real flow on the loopback route, and a studio
server over a job folder in a background thread."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LANGS = ["ja", "en", "ko"]


def plan_from_truth(truth: dict[str, Any], path: Path) -> Path:
    """A segments.json of the sample's true sentences (recognition is not what the studio tests)."""
    lines = [
        {"index": n, "start": s["start"], "end": s["end"], "text": s["text"]}
        for n, s in enumerate(truth["sentences"])
    ]
    path.write_text(json.dumps({"version": 1, "source_language": "en", "duration": truth["duration"],
                                "lines": lines}))  # fmt: skip
    return path


def dub_job(
    video: Path, plan: Path, out: Path, cache: Path, langs: list[str] = LANGS, **options: Any
) -> Path:
    """Dub `video` with the given plan through the real flow (the loopback DashScope must be reachable
    through the environment); returns the job folder."""
    from core.config import build_config
    from flows.dub import dub

    config = build_config(
        video=video, langs=",".join(langs), out=out, cache_dir=cache, retry_base_delay_s=0.01,
        separator="none", segments=plan, **options,
    )  # fmt: skip
    dub(config)
    return out


@contextmanager
def studio(job: Path, token: str | None = None, host: str = "127.0.0.1") -> Iterator[Any]:
    from webstudio.server import StudioServer

    server = StudioServer(job, host, 0, token)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        server.redubber.wait(60)


_MADE: dict[str, Path] = {}


def base_job(video: Path, truth: dict[str, Any], folder: Path) -> Path:
    """The sample dubbed into LANGS by the real flow on the loopback route, made once per test session
    and shared by the studio's test modules (each test works on its own copy: copy_job)."""
    if "job" not in _MADE:
        import os

        from tests.loopback_dashscope import LoopbackDashScope

        folder.mkdir(parents=True, exist_ok=True)
        saved = {k: os.environ.get(k) for k in ("DASHSCOPE_HTTP_BASE_URL", "DASHSCOPE_API_KEY")}
        # a little slower speech than the default, so some lines are sped up, shortened or cut
        with LoopbackDashScope(seconds_per_char=0.075) as server:
            os.environ["DASHSCOPE_HTTP_BASE_URL"] = server.base_http_api_url
            os.environ["DASHSCOPE_API_KEY"] = server.api_key
            try:
                _MADE["job"] = dub_job(
                    video, plan_from_truth(truth, folder / "plan.json"), folder / "job", folder / "cache"
                )
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
    return _MADE["job"]


def copy_job(job: Path, into: Path) -> Path:
    """A copy of a job folder (the clip cache stays shared: what it holds is keyed by content)."""
    import shutil

    return Path(shutil.copytree(job, into, symlinks=True))
