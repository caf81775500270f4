"""The CLI as a user runs it (its own temporary Prefect server), against the loopback DashScope."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.loopback_dashscope import LoopbackDashScope

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent


def run(args: list[str], server: LoopbackDashScope, tmp: Path, key: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DASHSCOPE_HTTP_BASE_URL": server.base_http_api_url,
        "DASHSCOPE_API_KEY": key,
        "QWENDUB_CACHE_DIR": str(tmp / "cache"),
        "PREFECT_HOME": str(tmp / "prefect-home"),
    }
    return subprocess.run(
        [sys.executable, "-m", "flows.dub", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_dubs_and_never_prints_text_or_key(
    tmp_path: Path, tiny_en_model: Path, sample_truth: dict
) -> None:
    with LoopbackDashScope(api_key="sk-very-secret-0123456789") as server:
        out = tmp_path / "out"
        proc = run(
            ["media_samples/sample.mp4", "--langs", "ja,en", "--separator", "none", "--out", str(out),
             "--asr-model", str(tiny_en_model), "--stream"],
            server, tmp_path, server.api_key,
        )  # fmt: skip
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, console[-3000:]
    assert f"dubbed video: {out / 'sample.dubbed.mkv'}" in proc.stdout
    assert (out / "sample.dubbed.mkv").is_file()
    assert "progress stage=synthesize-ja" in console  # long stages report progress
    assert "sk-very-secret" not in console
    texts = [s["text"] for s in sample_truth["sentences"]]
    texts += [ln["text"] for ln in json.loads((out / "lines.ja.json").read_text())["lines"]]
    for text in texts:
        assert text[:24] not in console, text


def test_cli_upstream_rejection_is_one_error_line(tmp_path: Path, tiny_en_model: Path) -> None:
    with LoopbackDashScope() as server:
        out = tmp_path / "out"
        proc = run(
            ["media_samples/sample.mp4", "--langs", "ja", "--separator", "none", "--out", str(out),
             "--asr-model", str(tiny_en_model)],
            server, tmp_path, "sk-wrong-key",
        )  # fmt: skip
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert re.match(r"error: translation of line \d+ \(ja\) failed: HTTP 401 InvalidApiKey", last), last
    assert not (out / "sample.dubbed.mkv").exists()
