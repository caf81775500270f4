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
def studio(
    job: Path, token: str | None = None, host: str = "127.0.0.1", deployment: str | None = None
) -> Iterator[Any]:
    from webstudio.server import StudioServer

    server = StudioServer(job, host, 0, token, deployment)
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


def long_job(job: Path, into: Path, repeats: int = 20) -> Path:
    """A long job made from a real one without dubbing again: the job's timeline repeated `repeats` times
    (the sample's 29.6 s x 20: a 10-minute job of 160 lines in LANGS), every file in the format the flow
    writes it. A real 10-minute dub on the loopback route takes minutes on 2 cores; what the page loads
    is these files, so they are derived from the real job's own: segments.json, lines.<lang>.json and
    report.json's line timings with the times shifted and the indexes renumbered; the dubbed video's
    streams (picture, original and dubbed audio, subtitles) and work/analysis.wav looped by ffmpeg with
    stream copy; each language's WebVTT written from the repeated placements by text/subtitles as
    tasks/assemble writes it. work/config.json and cast.json are the real job's (a re-dub of this copy
    would dub the 30 s sample again: it is for loading, not for re-dubbing)."""
    import shutil
    import subprocess

    from core.files import read_json, write_json_atomic
    from text.subtitles import cues_for_track, write_vtt

    into.mkdir(parents=True)
    (into / "work").mkdir()
    plan = read_json(job / "segments.json")
    period = float(plan["duration"])
    per = len(plan["lines"])

    def repeated(items: list[dict[str, Any]], times: tuple[str, ...]) -> list[dict[str, Any]]:
        out = []
        for k in range(repeats):
            for item in items:
                copy = dict(item, index=k * per + int(item["index"]))
                for key in times:
                    if key in copy:
                        copy[key] = round(float(copy[key]) + k * period, 3)
                out.append(copy)
        return out

    lines = repeated(plan["lines"], ("start", "end"))
    for a, b in zip(lines, lines[1:], strict=False):  # the last line of a repeat pauses until the next
        a["pause_after"] = round(b["start"] - a["end"], 3)
    write_json_atomic(into / "segments.json", {**plan, "duration": period * repeats, "lines": lines})
    for lang in LANGS:
        data = read_json(job / f"lines.{lang}.json")
        write_json_atomic(
            into / f"lines.{lang}.json", {**data, "lines": repeated(data["lines"], ("start", "end"))}
        )
    report = read_json(job / "report.json")
    report["source"] = {**report["source"], "duration": period * repeats, "lines": per * repeats}
    for lang, track in report["tracks"].items():
        track["lines"] = per * repeats
        track["lines_timing"] = repeated(track["lines_timing"], ("start", "slot_end"))
        verify = track.get("verify") or {}
        if verify.get("flagged_lines"):
            verify["flagged_lines"] = [k * per + i for k in range(repeats) for i in verify["flagged_lines"]]
        texts = {e["index"]: e["text"] for e in read_json(into / f"lines.{lang}.json")["lines"]}
        placed = [(t["start"], t["start"] + t["placed_s"], texts[t["index"]]) for t in track["lines_timing"]]
        write_vtt(cues_for_track(placed, period * repeats), into / f"{job_name(job)}.{lang}.vtt", lang)
    write_json_atomic(into / "report.json", report)
    for name in ("cast.json", "work/config.json"):
        if (job / name).is_file():
            shutil.copyfile(job / name, into / name)
    for name in (f"{job_name(job)}.dubbed.mkv", "work/analysis.wav"):
        subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-stream_loop", str(repeats - 1), "-i", str(job / name),
             "-map", "0", "-c", "copy", "-t", str(period * repeats), str(into / name)],
            check=True,
        )  # fmt: skip
    return into


def job_name(job: Path) -> str:
    return next(job.glob("*.dubbed.*")).name.split(".dubbed.")[0]
