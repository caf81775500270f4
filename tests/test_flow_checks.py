"""The flow runs the CLI's checks itself: a run started from the UI, a deployment or run_deployment fails
within seconds, before any model loads, with the same one line as its state message (no traceback, no
"Flow run encountered an exception"); a caller of the flow in Python (the CLI) still gets the exception.
The checks run cheapest first: options, key, consent, input, output folder, then the one model load."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.errors import ConfigError, DubError, InputError
from tests.service_stop import stop_service

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "media_samples" / "sample.mp4"


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every model load a check attempts (demucs is the only one): recorded, and refused."""
    import models.demucs_separator as demucs

    seen: list[str] = []

    def load_model(ref: object) -> None:
        seen.append(str(ref))
        raise AssertionError("a model loaded")

    monkeypatch.setattr(demucs, "load_model", load_model)
    return seen


def job(tmp_path: Path, **values: object) -> dict[str, object]:
    """A deployment run's `config`: JSON values, the default separator (demucs, a model to load)."""
    return {"video": str(SAMPLE), "langs": ["ja"], "out": str(tmp_path / "out"), **values}


@pytest.mark.parametrize(
    ("values", "key", "error", "needle"),
    [
        ({}, None, InputError, "DASHSCOPE_API_KEY is not set"),
        ({"voice": "Cheri"}, "sk-test", ConfigError, "unknown voice 'Cheri'"),
        ({"video": "/nowhere/missing.mp4"}, "sk-test", InputError, "input video not found"),
        ({"tts_rpm": 0}, "sk-test", ConfigError, "tts_rpm: must be ≥ 1"),  # a deployment names the field
        ({"langs": ["ja", "xx"]}, "sk-test", ConfigError, "unknown language code 'xx'"),
    ],
)
def test_checks_fail_before_any_model_loads(
    values: dict, key: str | None, error: type[DubError], needle: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, loads: list[str],
) -> None:  # fmt: skip
    from core.checks import preflight

    if key is None:
        monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    else:
        monkeypatch.setenv("DASHSCOPE_API_KEY", key)
    with pytest.raises(error, match=needle) as caught:
        preflight(job(tmp_path, **values))
    assert "\n" not in str(caught.value)
    assert loads == []
    assert not (tmp_path / "out").exists(), "a failed check left an output folder"


def test_the_model_loads_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loads: list[str]) -> None:
    """With every cheap check passed, the demucs load is the last step (and its failure still one line)."""
    from core.checks import preflight

    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test")
    with pytest.raises(AssertionError, match="a model loaded"):
        preflight(job(tmp_path))
    assert len(loads) == 1
    assert (tmp_path / "out").is_dir()  # the output folder was checked before the load


def test_preflight_returns_the_validated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.checks import preflight
    from core.config import DubConfig, build_config

    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test")
    config = preflight(job(tmp_path, separator="none", voice="cherry"))
    assert isinstance(config, DubConfig) and config.voice == "Cherry" and config.video == SAMPLE
    built = build_config(**job(tmp_path, separator="none"))
    assert preflight(built) is built


# ------------------------------------------------------------------------------------ the flow itself


def test_flow_fails_with_the_one_line_as_its_state_message(
    prefect_harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loads: list[str]
) -> None:
    """Called with a deployment's JSON config, the flow validates and checks it: the final state is Failed
    with exactly the check's line; called from Python, the same exception reaches the caller."""
    from flows.dub import dub

    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    state = dub(job(tmp_path), return_state=True)  # type: ignore[arg-type]  # JSON, as the API passes it
    assert state.is_failed()
    assert state.message is not None and state.message.startswith("DASHSCOPE_API_KEY is not set")
    assert "\n" not in state.message and "exception" not in state.message.lower()
    with pytest.raises(ConfigError, match="unknown voice 'Cheri'"):
        dub(job(tmp_path, voice="Cheri"))  # type: ignore[arg-type]
    assert loads == []


# ----------------------------------------------------------------------------- a served deployment


def test_deployment_runs_fail_fast_with_the_one_line(prefect_harness, tmp_path: Path) -> None:
    """`python -m flows.serve` (no DASHSCOPE_API_KEY in its environment) executes three runs started with
    run_deployment, as the UI's Run button does: no key, an unknown voice, a missing video. Each fails
    within seconds, and its state message is the CLI's one line."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL

    name = "dub-checks"
    env = {k: v for k, v in os.environ.items() if k != "DASHSCOPE_API_KEY"}
    env.update(PREFECT_API_URL=str(PREFECT_API_URL.value()), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               QWENDUB_CACHE_DIR=str(tmp_path / "cache"))  # fmt: skip
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flows.serve", "--name", name, "--limit", "3"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    cases = {
        "no key": (job(tmp_path), "DASHSCOPE_API_KEY is not set"),
        "unknown voice": (job(tmp_path, voice="Cheri"), "unknown voice 'Cheri'"),
        # a dry run needs no key: the missing video is what fails
        "missing video": (job(tmp_path, video=str(tmp_path / "missing.mp4"), dry_run=True),
                          "input video not found"),
    }  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            with get_client(sync_client=True) as client:
                try:
                    client.read_deployment_by_name(f"dub/{name}")
                    break
                except Exception:  # noqa: BLE001 - ObjectNotFound until the service registers it
                    pass
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "the service did not register its deployment"
            time.sleep(0.5)
        started = time.monotonic()
        runs = {
            case: run_deployment(f"dub/{name}", parameters={"config": config}, timeout=0)
            for case, (config, _) in cases.items()
        }
        states = {}
        with get_client(sync_client=True) as client:
            while len(states) < len(runs):
                assert time.monotonic() - started < 120, log_path.read_text()[-3000:]
                for case, run in runs.items():
                    state = client.read_flow_run(run.id).state
                    if state is not None and state.is_final():
                        states[case] = state
                time.sleep(0.5)
        elapsed = time.monotonic() - started
    finally:
        stop_service(proc, log_path)
    served = log_path.read_text()
    for case, (_, needle) in cases.items():
        state = states[case]
        assert state.is_failed(), (case, state, served[-3000:])
        assert state.message is not None and needle in state.message, (case, state.message)
        assert "\n" not in state.message and "exception" not in state.message.lower(), state.message
    assert "loading demucs model" not in served
    assert elapsed < 90, f"three failing checks took {elapsed:.0f} s"
