"""`qwen-dub models pull`: the models a configuration needs, fetched through huggingface_hub from a loopback
hub into a fresh cache, then loaded by the real loaders and used by a job with HF_HUB_OFFLINE=1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.loopback_dashscope import LoopbackDashScope
from tests.loopback_hf_hub import LoopbackHub

ROOT = Path(__file__).resolve().parent.parent
WHISPER_REPO = "Systran/faster-whisper-tiny.en"  # what faster-whisper fetches for `--asr-model tiny.en`
TTS_REPO = "Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice"  # what `--tts local --tts-size 0.6B` loads
DEAD_HUB = "http://127.0.0.1:9"  # nothing listens: any attempt to reach the hub fails


def qwen_dub(args: list[str], env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.main", *args],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_DISABLE_TELEMETRY": "1", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def hub(tiny_en_model: Path, tiny_qwen_tts: dict[str, Path]) -> LoopbackHub:
    with LoopbackHub({WHISPER_REPO: tiny_en_model, TTS_REPO: tiny_qwen_tts["custom_voice"]}) as server:
        yield server


def test_pull_fetches_every_model_with_the_total_first_then_loaders_run_offline(
    tmp_path: Path, hub: LoopbackHub
) -> None:
    cache = tmp_path / "hub-cache"
    flags = ["--separator", "none", "--asr-model", "tiny.en", "--tts", "local", "--tts-size", "0.6B"]
    proc = qwen_dub(["models", "pull", *flags, "--to", str(cache)], {"HF_ENDPOINT": hub.url})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    total = next(i for i, line in enumerate(lines) if line.startswith("total: "))
    assert any(WHISPER_REPO in line for line in lines[:total]) and any(
        TTS_REPO in line for line in lines[:total]
    )
    assert lines[-2] == f"done: models ready in {cache}"
    weight_gets = [r for r in hub.requests if r.startswith("GET ") and "/resolve/" in r]
    assert any(r.endswith("/model.bin") for r in weight_gets)
    assert any(r.endswith(".safetensors") for r in weight_gets)
    assert "MB" in proc.stderr  # rich's progress bar (on stderr) counts bytes

    offline = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": DEAD_HUB}
    listed = qwen_dub(["models", "list", *flags], offline)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["cached", "cached", "bundled"]

    loaders = (
        "from models.whisper_asr import load_model as asr\n"
        "from models.qwen_local_tts import load_model as tts\n"
        "asr('tiny.en', 'cpu', 'int8')\n"
        f"model = tts({TTS_REPO!r}, 'cpu', 'float32', None)\n"
        "print('loaded', type(model).__name__)\n"
    )
    env = {**os.environ, **offline}
    proc = subprocess.run(
        [sys.executable, "-c", loaders], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("loaded Qwen3TTSModel")


@pytest.mark.e2e
def test_a_job_runs_offline_from_the_pulled_cache(tmp_path: Path, tiny_en_model: Path) -> None:
    cache = tmp_path / "hub-cache"
    with LoopbackHub({WHISPER_REPO: tiny_en_model}) as hub:
        proc = qwen_dub(
            ["models", "pull", "--separator", "none", "--asr-model", "tiny.en", "--to", str(cache)],
            {"HF_ENDPOINT": hub.url},
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "out"
    with LoopbackDashScope() as server:
        env = {
            "HF_HUB_CACHE": str(cache),
            "HF_HUB_OFFLINE": "1",
            "HF_ENDPOINT": DEAD_HUB,
            "DASHSCOPE_HTTP_BASE_URL": server.base_http_api_url,
            "DASHSCOPE_API_KEY": server.api_key,
            "QWENDUB_CACHE_DIR": str(tmp_path / "cache"),
            "PREFECT_HOME": str(tmp_path / "prefect-home"),
        }
        args = ["dub", "media_samples/sample.mp4", "--langs", "ja", "--separator", "none"]
        job = qwen_dub([*args, "--asr-model", "tiny.en", "--out", str(out)], env)
    assert job.returncode == 0, (job.stdout + job.stderr)[-3000:]
    assert (out / "sample.dubbed.mkv").is_file()


def test_a_model_missing_offline_is_one_error_line_naming_it_and_the_fix(tmp_path: Path) -> None:
    env = {"HF_HUB_CACHE": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": DEAD_HUB}
    code = "from models.whisper_asr import load_model\nload_model('tiny.en', 'cpu', 'int8')\n"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert "speech recognition model 'tiny.en' cannot be loaded" in proc.stderr
    assert "`qwen-dub models pull --asr-model tiny.en`" in proc.stderr
    listed = qwen_dub(["models", "list", "--separator", "none", "--asr-model", "tiny.en"], env)
    assert listed.stdout.splitlines()[0].startswith("missing")
    assert "HF_HUB_OFFLINE" in listed.stdout


def test_a_repo_the_hub_does_not_serve_is_one_error_line(tmp_path: Path) -> None:
    with LoopbackHub({}) as hub:
        proc = qwen_dub(
            ["models", "pull", "--separator", "none", "--asr-model", "tiny.en", "--to", str(tmp_path / "c")],
            {"HF_ENDPOINT": hub.url},
        )
    assert proc.returncode == 2
    role = "speech recognition (faster-whisper)"
    assert proc.stderr == f"error: the hub does not serve {WHISPER_REPO} ({role}): repository not found\n"


def test_pull_refuses_when_offline(tmp_path: Path) -> None:
    proc = qwen_dub(["models", "pull", "--separator", "none"], {"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: HF_HUB_OFFLINE is set: `models pull` needs the hub; unset it"


@pytest.mark.e2e
def test_a_job_missing_its_model_offline_ends_with_the_line_naming_it(tmp_path: Path) -> None:
    """The job's last line names the model and the command that fetches it (whatever Prefect printed
    before it: one line overall is issue 15's item 4, flows/cli.py)."""
    with LoopbackDashScope() as server:
        env = {
            "HF_HUB_CACHE": str(tmp_path / "empty-hub-cache"),
            "HF_HUB_OFFLINE": "1",
            "HF_ENDPOINT": DEAD_HUB,
            "DASHSCOPE_HTTP_BASE_URL": server.base_http_api_url,
            "DASHSCOPE_API_KEY": server.api_key,
            "QWENDUB_CACHE_DIR": str(tmp_path / "cache"),
            "PREFECT_HOME": str(tmp_path / "prefect-home"),
        }
        args = [
            "dub",
            "media_samples/sample.mp4",
            "--langs",
            "ja",
            "--separator",
            "none",
            "--asr-model",
            "tiny.en",
        ]
        job = qwen_dub([*args, "--out", str(tmp_path / "out")], env)
    assert job.returncode != 0
    last = job.stderr.strip().splitlines()[-1]
    assert last.startswith("error: speech recognition model 'tiny.en' cannot be loaded"), job.stderr[-2000:]
    assert last.endswith("(fetch it with `qwen-dub models pull --asr-model tiny.en`)")
