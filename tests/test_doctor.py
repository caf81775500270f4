"""`qwen-dub doctor`: each check passes, and fails for its own reason; one line per check; exit codes."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from core.doctor import (
    check_ffmpeg,
    check_ffprobe,
    check_folder,
    check_gpu,
    check_key,
    check_key_online,
    check_model,
    check_prefect,
    check_rubberband,
)
from models.store import ModelSettings, required_models
from tests.loopback_dashscope import LoopbackDashScope

ROOT = Path(__file__).resolve().parent.parent
LINE = re.compile(r"^(ok  |warn|FAIL)  [^:]+: .+$")
API = ModelSettings(separator="none", asr_model="tiny.en")


def doctor(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.main", "doctor", *args],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_DISABLE_TELEMETRY": "1", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def tools_dir(tmp_path: Path, *names: str) -> Path:
    """A PATH holding only the named real programs."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for name in names:
        real = shutil.which(name)
        assert real, name
        (folder / name).symlink_to(real)
    return folder


def test_ffmpeg_and_ffprobe_found_with_the_filters_the_code_uses() -> None:
    ffmpeg, ffprobe = check_ffmpeg(), check_ffprobe()
    assert ffmpeg.verdict == "ok" and "apad, atrim, asplit, aresample, pan" in ffmpeg.detail
    assert ffprobe.verdict == "ok" and re.match(r"\d", ffprobe.detail)


def test_ffmpeg_missing_from_path_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tools_dir(tmp_path)))
    assert check_ffmpeg().verdict == "FAIL" and "not found on PATH" in check_ffmpeg().detail
    assert check_ffprobe().verdict == "FAIL"


def test_ffmpeg_without_a_filter_the_code_uses_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real ffmpeg behind a wrapper that hides its `pan` filter, as a build without it would list."""
    folder = tmp_path / "bin"
    folder.mkdir()
    wrapper = folder / "ffmpeg"
    wrapper.write_text(f'#!/bin/sh\n{shutil.which("ffmpeg")} "$@" | grep -v " pan "\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    result = check_ffmpeg()
    assert result.verdict == "FAIL" and result.detail.endswith("lacks the filters pan")


def test_rubberband_library_is_usable() -> None:
    assert check_rubberband().verdict == "ok"


def test_key_presence_is_reported_never_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    assert check_key(API).verdict == "FAIL"
    assert check_key(ModelSettings(tts="local", translator="local")).verdict == "ok"
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-secret-value-123")
    result = check_key(API)
    assert result.verdict == "ok" and "sk-secret" not in result.line() and "19" not in result.line()


def test_online_check_makes_one_authenticated_call(monkeypatch: pytest.MonkeyPatch) -> None:
    with LoopbackDashScope() as server:
        monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", server.base_http_api_url)
        monkeypatch.setenv("DASHSCOPE_API_KEY", server.api_key)
        accepted = check_key_online("intl")
        monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-wrong")
        rejected = check_key_online("intl")
        calls = server.requests_of("voice")
    assert accepted.verdict == "ok", accepted.detail
    assert rejected.verdict == "FAIL" and "InvalidApiKey" in rejected.detail, rejected.detail
    assert len(calls) == 2  # one call each, no retry
    assert all(c.body["input"]["action"] == "list" for c in calls)  # listing voices costs nothing


def test_gpu_check_follows_the_device_asked_for() -> None:
    import torch

    if torch.cuda.is_available():
        result = check_gpu(ModelSettings(device="cuda"))
        assert result.verdict == "ok" and "GiB free" in result.detail
    else:
        assert check_gpu(API).verdict == "ok"
        assert check_gpu(ModelSettings(tts="local")).verdict == "warn"
        assert check_gpu(ModelSettings(device="cuda")).verdict == "FAIL"


def test_model_checks(tmp_path: Path, tiny_en_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder_need = required_models(ModelSettings(separator="none", asr_model=str(tiny_en_model)))[0]
    assert check_model(folder_need, online=False).verdict == "ok"
    missing_folder = required_models(ModelSettings(separator="none", asr_model=str(tmp_path / "nope")))[0]
    assert check_model(missing_folder, online=False).verdict == "FAIL"
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    hub_need = required_models(API)[0]
    assert check_model(hub_need, online=False).verdict == "warn"  # fetched on first use
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    offline = check_model(hub_need, online=False)
    assert offline.verdict == "FAIL"
    assert offline.detail.endswith("fix: qwen-dub models pull --asr-model tiny.en")


def test_folders_must_be_usable(tmp_path: Path) -> None:
    assert check_folder("cache", tmp_path / "new" / "cache").verdict == "ok"  # creatable
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert check_folder("cache", blocker / "cache").verdict == "FAIL"


def test_an_unwritable_cache_folder_fails(tmp_path: Path) -> None:
    """A folder this user cannot write: a chmod 500 folder, or for root (who writes any folder whatever its
    mode) /proc/sys, which containers mount read-only."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        folder = locked if not os.access(locked, os.W_OK) else Path("/proc/sys")
        if os.access(folder, os.W_OK):
            pytest.skip("this user can write every folder here (root outside a container)")
        result = check_folder("cache", folder / "qwen-dub")
    finally:
        locked.chmod(0o700)
    assert result.verdict == "FAIL" and "not readable and writable" in result.detail


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - Prefect's /api/health answers 200 `true`
        ok = self.path == "/api/health"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"true" if ok else b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api"
    server.shutdown()
    server.server_close()


def test_prefect_api_configured_or_temporary(health_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", health_server)
    assert check_prefect().verdict == "ok"
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    assert check_prefect().verdict == "FAIL"
    monkeypatch.delenv("PREFECT_API_URL")
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(restore_defaults={PREFECT_API_URL}):  # not the suite's harness server
        result = check_prefect()
    assert result.verdict == "ok" and "temporary local server" in result.detail


def test_ready_machine_exits_0_one_line_per_check(tmp_path: Path, tiny_en_model: Path) -> None:
    env = {"DASHSCOPE_API_KEY": "sk-doctor-secret", "QWENDUB_CACHE_DIR": str(tmp_path / "cache")}
    proc = doctor(["--separator", "none", "--asr-model", str(tiny_en_model), "--langs", "ja,en"], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert all(LINE.match(line) for line in lines[:-1]), lines
    assert lines[-1].startswith("ready: ") and proc.stderr == ""
    names = [line[6:].split(":")[0] for line in lines[:-1]]
    for name in ("ffmpeg", "ffprobe", "rubberband", "espeak-ng", "DASHSCOPE_API_KEY", "CUDA", "Prefect API"):
        assert name in names
    assert "sk-doctor-secret" not in proc.stdout


def test_blocked_route_exits_1_naming_what_blocks(tmp_path: Path) -> None:
    env = {"PATH": str(tools_dir(tmp_path)), "DASHSCOPE_API_KEY": "", "HF_HUB_OFFLINE": "1",
           "HF_HUB_CACHE": str(tmp_path / "empty")}  # fmt: skip
    proc = doctor(["--separator", "none", "--asr-model", "tiny.en"], env)
    assert proc.returncode == 1
    failed = [line.split(":")[0][6:] for line in proc.stdout.splitlines() if line.startswith("FAIL")]
    assert failed == ["ffmpeg", "ffprobe", "DASHSCOPE_API_KEY", "model speech recognition (faster-whisper)"]
    assert proc.stderr.strip().splitlines() == [f"error: 4 check(s) block this route: {', '.join(failed)}"]


def test_bad_flags_exit_2() -> None:
    assert doctor(["--tts", "nonsense"], {}).returncode == 2
