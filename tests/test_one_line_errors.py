"""Every failure, inside the flow or before it, ends as exactly one `error:` line on stderr: nothing
before it from Prefect (its "Task run failed" / "Finished in state Failed" lines) or from libraries.
Progress goes to stdout during a run (flows/cli.py, console_logs_to_stdout); --debug and --log-json keep
the full detail on stderr.

Each case is the real CLI in a subprocess: its own temporary Prefect server, real ffmpeg, the real SDK
against the loopback DashScope, transformers' real loader on a broken checkpoint.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.loopback_dashscope import LoopbackDashScope
from tests.test_dask_cluster import subtitles

ROOT = Path(__file__).resolve().parent.parent
VIDEO = "media_samples/sample.mp4"


def dub(args: list[str], tmp: Path, **env_overrides: str | None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp / "prefect-home"),
        "QWENDUB_CACHE_DIR": str(tmp / "cache"),
        "TORCH_HOME": str(tmp / "torch"),
        "HF_HOME": str(tmp / "hf"),
    }
    env.pop("PREFECT_API_URL", None)
    for key, value in env_overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run(
        [sys.executable, "-m", "flows.dub", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def one_error_line(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """stderr is exactly one line, `error: ...`, holding every needle; the exit is non-zero."""
    assert proc.returncode not in (0, None), proc.stdout[-2000:]
    assert proc.stderr.endswith("\n") and proc.stderr.count("\n") == 1, proc.stderr[-3000:]
    line = proc.stderr.rstrip("\n")
    assert line.startswith("error: "), line
    for needle in needles:
        assert needle in line, line
    assert "Traceback" not in proc.stdout + proc.stderr
    return line


# ------------------------------------------------------------------------- before the flow (cheap checks)


def test_a_bad_value_names_the_flag_typed(tmp_path: Path) -> None:
    proc = dub([VIDEO, "--langs", "ja", "--rpm", "-5"], tmp_path, DASHSCOPE_API_KEY="sk-x")
    line = one_error_line(proc, "--rpm")
    assert "tts_rpm" not in line


def test_no_key_is_said_before_any_model_download(tmp_path: Path) -> None:
    """Default separator (demucs, downloaded on first use) and no key: the key's line, and no download."""
    proc = dub([VIDEO, "--langs", "ja", "--out", str(tmp_path / "out")], tmp_path, DASHSCOPE_API_KEY=None)
    one_error_line(proc, "DASHSCOPE_API_KEY")
    assert not (tmp_path / "torch").exists() and not (tmp_path / "hf").exists()


def test_an_unwritable_output_folder_is_said_before_any_model_download(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = dub([VIDEO, "--langs", "ja", "--out", str(blocker / "out")], tmp_path, DASHSCOPE_API_KEY="sk-x")
    one_error_line(proc, "output folder", str(blocker / "out"))
    assert not (tmp_path / "torch").exists()


def test_a_missing_model_folder_is_one_line_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    proc = dub(
        [VIDEO, "--langs", "ja", "--separator", "none", "--translator", "local", "--translator-model",
         str(missing)], tmp_path, DASHSCOPE_API_KEY="sk-x",
    )  # fmt: skip
    one_error_line(proc, str(missing))
    proc = dub([VIDEO, "--langs", "ja", "--asr-model", str(missing)], tmp_path, DASHSCOPE_API_KEY="sk-x")
    one_error_line(proc, "--asr-model", str(missing))


def test_an_unusable_prefect_home_names_the_path_and_the_fix(tmp_path: Path) -> None:
    """A PREFECT_HOME that cannot be a folder (under a file: unwritable even for root) fails before any
    work with the path and the fix, not a temporary server dying a minute later."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    home = blocker / "prefect"
    proc = dub(
        [VIDEO, "--langs", "ja", "--separator", "none", "--out", str(tmp_path / "out")], tmp_path,
        DASHSCOPE_API_KEY="sk-x", PREFECT_HOME=str(home),
    )  # fmt: skip
    one_error_line(proc, f"Prefect home {home}", "PREFECT_HOME", "PREFECT_API_URL")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through a read-only mode")
def test_a_read_only_prefect_home_names_the_path(tmp_path: Path) -> None:
    home = tmp_path / "prefect-ro"
    home.mkdir(mode=0o555)
    proc = dub(
        [VIDEO, "--langs", "ja", "--separator", "none", "--out", str(tmp_path / "out")], tmp_path,
        DASHSCOPE_API_KEY="sk-x", PREFECT_HOME=str(home),
    )  # fmt: skip
    one_error_line(proc, f"Prefect home {home}")


# ------------------------------------------------------------------------------------- inside the flow


@pytest.mark.e2e
def test_a_corrupt_model_folder_inside_the_flow_is_one_line(tmp_path: Path) -> None:
    """A checkpoint folder whose config.json is cut short passes the cheap check (it is a folder with a
    config.json) and fails in the translate task, through transformers' real loader."""
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "qwen2", "hidden_si')
    plan = subtitles(tmp_path / "plan.srt", 2)
    proc = dub(
        [VIDEO, "--langs", "ja", "--separator", "none", "--subtitles", str(plan), "--translator", "local",
         "--translator-model", str(broken), "--out", str(tmp_path / "out")],
        tmp_path, DASHSCOPE_API_KEY="sk-x",
    )  # fmt: skip
    one_error_line(proc, str(broken))
    assert "Finished in state Failed" not in proc.stdout  # no failure chatter on stdout either
    assert "Task run failed" not in proc.stdout
    assert "Beginning flow run" in proc.stdout  # progress is shown


@pytest.mark.e2e
@pytest.mark.parametrize("status", [400, 401])
def test_an_upstream_rejection_inside_the_flow_is_one_line(tmp_path: Path, status: int) -> None:
    plan = subtitles(tmp_path / "plan.srt", 2)
    with LoopbackDashScope() as server:
        if status == 400:
            server.fail_next("mt", 400, "InvalidParameter", times=10)
        key = server.api_key if status == 400 else "sk-wrong"
        proc = dub(
            [VIDEO, "--langs", "ja", "--separator", "none", "--subtitles", str(plan), "--out",
             str(tmp_path / "out")], tmp_path, DASHSCOPE_API_KEY=key,
            DASHSCOPE_HTTP_BASE_URL=server.base_http_api_url,
        )  # fmt: skip
    one_error_line(proc, f"HTTP {status}", "translation of line")
    assert proc.returncode == 1
    assert "Task run failed" not in proc.stdout and "Finished in state Failed" not in proc.stdout
    assert not (tmp_path / "out" / "sample.dubbed.mkv").exists()


@pytest.mark.e2e
def test_debug_keeps_the_detail(tmp_path: Path) -> None:
    plan = subtitles(tmp_path / "plan.srt", 1)
    with LoopbackDashScope() as server:
        proc = dub(
            [VIDEO, "--langs", "ja", "--separator", "none", "--subtitles", str(plan), "--out",
             str(tmp_path / "out"), "--log-json"], tmp_path, DASHSCOPE_API_KEY="sk-wrong",
            DASHSCOPE_HTTP_BASE_URL=server.base_http_api_url,
        )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1].startswith("error: translation of line")
    assert '"level": "error"' in proc.stderr  # Prefect's failure records, as JSON lines


@pytest.mark.e2e
def test_a_failure_in_a_dask_worker_process_is_one_line(tmp_path: Path) -> None:
    """The worker processes of the local cluster write to the same terminal: their console follows the
    CLI's (flows/dask_worker.py), so their failure chatter and start-up lines stay off stderr too."""
    plan = subtitles(tmp_path / "plan.srt", 2)
    with LoopbackDashScope() as server:
        proc = dub(
            [VIDEO, "--langs", "ja", "--separator", "none", "--subtitles", str(plan), "--out",
             str(tmp_path / "out"), "--task-runner", "dask"], tmp_path, DASHSCOPE_API_KEY="sk-wrong",
            DASHSCOPE_HTTP_BASE_URL=server.base_http_api_url, QWENDUB_DASK_WORKERS="2",
        )  # fmt: skip
    one_error_line(proc, "HTTP 401", "translation of line")
