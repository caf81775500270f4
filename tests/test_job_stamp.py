"""An unchanged finished job re-runs at once (core/job_stamp.py): the CLI prints its outputs and stops
before Prefect or any model is imported; any change (an edited translation, a deleted output, an option)
runs the flow again, and `--force` always does (tests/test_prefect_server_reuse.py).

The CLI runs for real (its own temporary Prefect server, ffmpeg) against the loopback DashScope through the
real SDK; the service's own request count says what was paid."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import build_config
from core.job_stamp import fingerprint, may_stamp, record, stamp_path, up_to_date
from tests.loopback_dashscope import LoopbackDashScope

ROOT = Path(__file__).resolve().parent.parent


def write_plan(path: Path) -> Path:
    truth = json.loads((ROOT / "media_samples" / "sample.truth.json").read_text())
    lines = [
        {"index": i, "start": s["start"], "end": s["end"], "text": s["text"]}
        for i, s in enumerate(truth["sentences"][:4])
    ]
    path.write_text(json.dumps({"source_language": "en", "lines": lines}))
    return path


@pytest.mark.e2e
def test_an_unchanged_job_returns_at_once_and_any_change_runs_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [
        sys.executable, "-m", "flows.cli", "media_samples/sample.mp4", "--langs", "ja", "--separator", "none",
        "--segments", str(write_plan(tmp_path / "plan.json")), "--out", str(out),
        "--cache-dir", str(tmp_path / "cache"), "--no-shorten",
    ]  # fmt: skip
    with LoopbackDashScope() as service:
        env = {
            **os.environ,
            "DASHSCOPE_HTTP_BASE_URL": service.base_http_api_url,
            "DASHSCOPE_API_KEY": service.api_key,
            "PREFECT_HOME": str(tmp_path / "prefect-home"),
        }
        env.pop("PREFECT_API_URL", None)

        def cli(*extra: str) -> subprocess.CompletedProcess[str]:
            done = subprocess.run(
                [*args, *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
            )  # fmt: skip
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
            return done

        first = cli()
        assert service.count("tts") == 4 and "up to date" not in first.stdout
        assert (out / "work" / "done.json").is_file()
        video = out / "sample.dubbed.mkv"
        made = video.stat().st_mtime_ns

        def prefect_files() -> dict[str, int]:  # the temporary server's database: a flow run writes it
            home = tmp_path / "prefect-home"
            return {str(p): p.stat().st_mtime_ns for p in home.rglob("*") if p.is_file()}

        service.reset()
        prefect_before = prefect_files()
        assert any(name.endswith("prefect.db") for name in prefect_before)
        again = cli()
        assert "up to date" in again.stdout and f"dubbed video: {video}" in again.stdout
        assert service.count() == 0 and video.stat().st_mtime_ns == made  # nothing called, nothing rewritten
        assert prefect_files() == prefect_before  # no server started, no flow run recorded

        lines = out / "lines.ja.json"  # the user edits one translation: that line, and only it, is paid
        data = json.loads(lines.read_text())
        entries = data["lines"] if isinstance(data, dict) else data
        entries[1]["text"] = "これは編集された訳です。"
        lines.write_text(json.dumps(data, ensure_ascii=False))
        service.reset()
        edited = cli()
        assert "up to date" not in edited.stdout and service.count("tts") == 1
        assert video.stat().st_mtime_ns != made

        service.reset()
        assert "up to date" in cli().stdout  # the edit is now part of the stamp

        (out / "sample.ja.srt").unlink()  # a deleted output: the run makes it again, from the cache
        service.reset()
        restored = cli()
        assert "up to date" not in restored.stdout and (out / "sample.ja.srt").is_file()
        assert service.count() == 0
        # --force runs the flow whatever the stamp says: tests/test_prefect_server_reuse.py's re-run


def test_what_the_stamp_covers(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"not really a video")
    out = tmp_path / "job"
    out.mkdir()
    (out / "lines.ja.json").write_text('{"lines": []}')
    report = out / "report.json"
    report.write_text(json.dumps({"tracks": {"ja": {"synthesis": {"guard_flagged": 0}}}, "speakers": {}}))
    config = build_config(video=video, langs="ja", out=out, cache_dir=tmp_path / "cache", separator="none")
    outputs = {"video": str(out / "v.dubbed.mkv"), "report": str(report), "subtitles": {}}
    assert record(config, outputs, report) and up_to_date(config) == outputs

    before = fingerprint(config)
    (out / "lines.ja.json").write_text('{"lines": [{"index": 0, "text": "x"}]}')  # an edit
    assert up_to_date(config) is None and fingerprint(config)["job_files"] != before["job_files"]
    assert record(config, outputs, report) and up_to_date(config) == outputs

    os.utime(video, ns=(1, 1))  # the input video replaced (its time changed)
    assert up_to_date(config) is None
    assert record(config, outputs, report)
    other = build_config(video=video, langs="ja", out=out, cache_dir=tmp_path / "cache", separator="none",
                         max_speedup=1.1)  # fmt: skip
    assert up_to_date(other) is None  # another option

    report.write_text(json.dumps({"tracks": {"ja": {"synthesis": {"guard_flagged": 1}}}}))
    assert not record(config, outputs, report) and not stamp_path(config).exists()  # retried next run
    report.write_text(json.dumps({"tracks": {}, "speakers": {"S1": {"cloned": True}}}))
    assert not record(config, outputs, report)  # consent is checked on every run of a clone
    dry = build_config(video=video, langs="ja", out=out, cache_dir=tmp_path / "cache", dry_run=True)
    assert not may_stamp(dry)


def test_the_stamp_does_not_change_when_the_flow_imports_setuptools(tmp_path: Path) -> None:
    """faster-whisper's imports pull in setuptools, which appends its _vendor folder to sys.path: the stamp
    written after a transcribing run must equal the one the next run computes before importing anything."""
    code = (
        "import json, sys; from pathlib import Path; from core.config import build_config; "
        "from core.job_stamp import fingerprint; "
        f"c = build_config(video=Path({str(tmp_path / 'v.mp4')!r}), langs='ja', out=Path({str(tmp_path)!r}), "
        "separator='none'); before = fingerprint(c); import setuptools; "
        "assert any('_vendor' in p for p in sys.path); print(json.dumps(before == fingerprint(c)))"
    )
    (tmp_path / "v.mp4").write_bytes(b"x")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "true"
