"""Prefect-native operation: prefect.yaml deploys with the real `prefect` CLI and its runs execute on a real
process worker; `python -m flows.serve` builds its deployment (and its UI form) without side effects; the
per-language stages run on a Dask cluster through prefect-dask; the global concurrency limit recipe of
docs/operations.md paces calls across processes.

The Prefect server is the session's temporary one (tests/conftest.py::prefect_harness); the CLI
subprocesses reach it through PREFECT_API_URL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.loopback_dashscope import LoopbackDashScope
from tests.mediacheck import ffprobe_streams
from tests.service_stop import stop_service

ROOT = Path(__file__).resolve().parent.parent
LANGUAGE_CODES = {"zh", "en", "de", "it", "pt", "es", "ja", "ko", "fr", "ru"}


def prefect_cli(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "prefect"), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert proc.returncode == 0, f"prefect {' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def write_plan(path: Path, sample_truth: dict) -> Path:
    """A segments.json from the sample's known script: runs that start from it skip recognition."""
    lines = [
        {"index": i, "start": s["start"], "end": s["end"], "text": s["text"]}
        for i, s in enumerate(sample_truth["sentences"])
    ]
    path.write_text(json.dumps({"source_language": "en", "lines": lines}))
    return path


def harness_env(**extra: str) -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    return {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PWD": str(ROOT),  # what a shell sets in the repository root; prefect.yaml's pull step uses it
        **extra,
    }


# -------------------------------------------------------------------------------------- prefect.yaml


def test_the_entrypoint_loads_as_a_script_the_way_prefect_deploy_loads_it() -> None:
    """`prefect deploy` and workers load flows/dub.py as a script, with flows/ first on sys.path: a module in
    flows/ named like a top-level package (flows/models.py once did) hides that package, the import fails and
    Prefect silently falls back to a placeholder flow whose UI form has no DubConfig fields."""
    top_level = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    shadowing = sorted(m.stem for m in (ROOT / "flows").glob("*.py") if m.stem in top_level)
    assert not shadowing, f"modules in flows/ that hide top-level packages: {shadowing}"
    code = (
        "from prefect.flows import load_flow_from_entrypoint\n"
        "from prefect.utilities.callables import parameter_schema\n"
        "flow = load_flow_from_entrypoint('flows/dub.py:dub', use_placeholder_flow=False)\n"
        "print(sorted(parameter_schema(flow).model_dump()['definitions']['DubConfig']['properties']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "'langs'" in proc.stdout and "'video'" in proc.stdout


def test_prefect_yaml_reads_as_prefect_reads_it() -> None:
    """Offline: Prefect's own prefect.yaml model accepts the file, the entrypoint loads the `dub` flow, and
    every deployment's default parameters are a valid DubConfig."""
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.flows import load_flow_from_entrypoint

    from core.config import DubConfig

    raw = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    model = PrefectYamlModel.model_validate(raw)
    assert [d.name for d in model.deployments] == ["dub-cpu", "dub-gpu"]
    assert model.pull == [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $PWD }}"}}]
    for deployment in model.deployments:
        assert deployment.entrypoint == "flows/dub.py:dub"
        flow = load_flow_from_entrypoint(str(ROOT / deployment.entrypoint))
        assert flow.name == "dub"
        assert deployment.work_pool is not None and deployment.work_pool.name == deployment.name
        assert "QWENDUB_CACHE_DIR" in deployment.work_pool.job_variables["env"]
        config = DubConfig(**deployment.parameters["config"])
        assert set(config.langs) <= LANGUAGE_CODES
    gpu = DubConfig(**model.deployments[1].parameters["config"])
    assert (gpu.tts, gpu.translator, gpu.device) == ("local", "local", "cuda")


def test_prefect_deploy_then_a_process_worker_runs_the_job(
    prefect_harness, sample_video: Path, sample_truth: dict, tmp_path: Path
) -> None:
    """`prefect deploy --all` registers both deployments from prefect.yaml as written; a run started with
    `prefect deployment run dub/dub-cpu --param config=...` is picked up by `prefect worker start --pool
    dub-cpu --run-once`, which runs the pull step and the flow in a subprocess: the dubbed video appears."""
    from prefect.client.orchestration import get_client

    with LoopbackDashScope() as server:
        env = harness_env(DASHSCOPE_HTTP_BASE_URL=server.base_http_api_url, DASHSCOPE_API_KEY=server.api_key)
        for pool in ("dub-cpu", "dub-gpu"):
            prefect_cli("work-pool", "create", pool, "--type", "process", "--overwrite", env=env)
        prefect_cli("--no-prompt", "deploy", "--all", env=env)

        with get_client(sync_client=True) as client:
            deployments = {d.name: d for d in client.read_deployments()}
        assert set(deployments) >= {"dub-cpu", "dub-gpu"}
        cpu, gpu = deployments["dub-cpu"], deployments["dub-gpu"]
        assert (cpu.entrypoint, cpu.work_pool_name, gpu.work_pool_name) == (
            "flows/dub.py:dub", "dub-cpu", "dub-gpu"
        )  # fmt: skip
        assert cpu.pull_steps == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}
        ]
        assert cpu.job_variables["env"]["QWENDUB_CACHE_DIR"] == f"{ROOT}/.cache/qwen-dub"
        assert gpu.job_variables["env"]["CUDA_VISIBLE_DEVICES"] == "0"
        assert cpu.parameters["config"]["langs"] == ["ja", "en", "ko"]
        assert cpu.global_concurrency_limit is not None and cpu.global_concurrency_limit.limit == 4
        assert gpu.global_concurrency_limit is not None and gpu.global_concurrency_limit.limit == 1
        props = cpu.parameter_openapi_schema["definitions"]["DubConfig"]["properties"]
        assert {"video", "langs", "tts", "voice", "out"} <= set(props)

        plan = write_plan(tmp_path / "segments.json", sample_truth)
        config = {
            "video": str(sample_video), "langs": ["ja"], "separator": "none", "segments": str(plan),
            "out": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"), "retry_base_delay_s": 0.01,
        }  # fmt: skip
        started = prefect_cli(
            "deployment", "run", "dub/dub-cpu", "--param", f"config={json.dumps(config)}", env=env
        )
        assert "Created flow run" in started.stdout
        prefect_cli("worker", "start", "--pool", "dub-cpu", "--run-once", env=env, timeout=400)
        tts_requests = server.count("tts")

    with get_client(sync_client=True) as client:
        runs = [r for r in client.read_flow_runs() if r.deployment_id == cpu.id]
    assert [r.state_name for r in runs] == ["Completed"]
    assert runs[0].name == "dub-sample"  # flow_run_name="dub-{config.video.stem}" from the form's values
    video = tmp_path / "out" / "sample.dubbed.mkv"
    audio = [s for s in ffprobe_streams(video) if s["codec_type"] == "audio"]
    assert [s.get("tags", {}).get("language") for s in audio] == ["eng", "jpn"]
    assert tts_requests == len(sample_truth["sentences"])


# ----------------------------------------------------------------------------------- flows/serve.py


def test_serve_module_imports_without_side_effects() -> None:
    """Importing flows.serve starts nothing and imports neither Prefect nor the flow; --help is instant."""
    code = "import sys, flows.serve; print(sorted(m for m in ('prefect', 'flows.dub') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "flows.serve", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "--task-runner" in proc.stdout and "--dask-address" in proc.stdout


def test_served_deployment_and_its_ui_form() -> None:
    """What `python -m flows.serve` registers: deployment dub/dub whose parameter schema is DubConfig's,
    so the UI renders a form: enums as selects, the languages as a multi-select of the ten codes."""
    from flows.serve import EXAMPLE_PARAMETERS, build_deployment

    deployment = build_deployment()
    assert (deployment.name, deployment.flow_name) == ("dub", "dub")
    assert deployment.entrypoint is not None and deployment.entrypoint.endswith("flows/dub.py:dub")
    assert deployment.parameters == EXAMPLE_PARAMETERS and deployment.enforce_parameter_schema
    schema = deployment._parameter_openapi_schema.model_dump()
    assert schema["required"] == ["config"]
    config = schema["definitions"]["DubConfig"]
    assert set(config["required"]) == {"video", "langs"}  # cache_dir defaults where the run executes
    props = config["properties"]
    assert props["tts"]["enum"] == ["api", "local"] and props["container"]["enum"] == ["mkv", "mp4"]
    assert props["video"]["format"] == "path"
    langs = props["langs"]
    assert langs["type"] == "array"
    assert set(langs["items"].get("enum", [])) == LANGUAGE_CODES, (
        f"languages render as free text, not a multi-select of the ten codes: {langs}"
    )
    # the form lists the common options first (the UI sorts by `position`), advanced ones titled so;
    # descriptions are Markdown without raw `<...>` (rendered as HTML, `<video name>` would vanish)
    order = sorted(props, key=lambda name: props[name]["position"])
    assert order[:8] == ["video", "langs", "out", "voice", "cast", "tts", "translator", "source_lang"]
    assert props["tts_rpm"]["title"].endswith("(advanced)") and not props["voice"]["title"].endswith(")")
    assert "`out/<video name>/`" in props["out"]["description"]
    assert not any("cli" in prop for prop in props.values())


def test_python_m_flows_serve_runs_a_job_from_its_deployment(
    prefect_harness, sample_video: Path, sample_truth: dict, tmp_path: Path
) -> None:
    """`python -m flows.serve` registers its deployment and executes a run started through the API (as the
    UI's Run button does), in a spawned subprocess of the serve process; Ctrl-C stops the service."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    plan = write_plan(tmp_path / "segments.json", sample_truth)
    name = "dub-served"  # its own name: the session's server also holds the deployments of other tests
    with LoopbackDashScope() as server:
        env = harness_env(DASHSCOPE_HTTP_BASE_URL=server.base_http_api_url, DASHSCOPE_API_KEY=server.api_key)
        log = (tmp_path / "serve.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "flows.serve", "--name", name, "--limit", "1"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while True:
                with get_client(sync_client=True) as client:
                    try:
                        client.read_deployment_by_name(f"dub/{name}")
                        break
                    except Exception:  # noqa: BLE001 - ObjectNotFound until the service registers it
                        pass
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the service did not register its deployment"
                time.sleep(0.5)
            config = {
                "video": str(sample_video), "langs": ["ja"], "separator": "none", "segments": str(plan),
                "out": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"),
                "retry_base_delay_s": 0.01,
            }  # fmt: skip
            run = run_deployment(f"dub/{name}", parameters={"config": config}, timeout=300)
            tts_requests = server.count("tts")
        finally:
            code = stop_service(proc, tmp_path / "serve.log")
    served = (tmp_path / "serve.log").read_text()
    assert run.state is not None and run.state.is_completed(), served[-3000:]
    assert run.name == "dub-sample"
    assert (tmp_path / "out" / "sample.dubbed.mkv").is_file()
    assert tts_requests == len(sample_truth["sentences"])
    assert code == 0, served[-2000:]


def test_task_runner_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    from flows.runners import make_task_runner

    monkeypatch.delenv("QWENDUB_TASK_RUNNER", raising=False)
    monkeypatch.delenv("QWENDUB_DASK_ADDRESS", raising=False)
    assert isinstance(make_task_runner(), ThreadPoolTaskRunner)
    assert isinstance(make_task_runner("thread"), ThreadPoolTaskRunner)
    assert isinstance(make_task_runner("dask"), DaskTaskRunner)
    assert make_task_runner("dask", "tcp://127.0.0.1:8786").address == "tcp://127.0.0.1:8786"
    assert make_task_runner(None, "tcp://127.0.0.1:8786").address == "tcp://127.0.0.1:8786"
    monkeypatch.setenv("QWENDUB_TASK_RUNNER", "dask")
    monkeypatch.setenv("QWENDUB_DASK_ADDRESS", "tcp://10.0.0.5:8786")
    assert make_task_runner().address == "tcp://10.0.0.5:8786"  # what a work pool's job variables set
    monkeypatch.delenv("QWENDUB_DASK_ADDRESS")
    assert isinstance(make_task_runner(), DaskTaskRunner)
    with pytest.raises(ValueError, match="unknown task runner"):
        make_task_runner("ray")
    with pytest.raises(ValueError, match="needs --task-runner dask"):
        make_task_runner("thread", "tcp://127.0.0.1:8786")


# --------------------------------------------------------------------------------------------- Dask


def test_dub_flow_on_a_dask_cluster(
    prefect_harness, sample_video: Path, sample_truth: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real flow with prefect-dask's DaskTaskRunner on a LocalCluster (1 worker, 2 threads, in-process):
    the per-language stages and every per-line task (synthesis, shortening, fitting) are submitted to
    Dask, and the output is complete."""
    import distributed

    from core.config import build_config
    from flows.dub import dub
    from flows.runners import make_task_runner

    submitted: list[str] = []
    submit = distributed.Client.submit

    def spy(self, func, *args, **kwargs):
        submitted.append(getattr(func, "name", None) or getattr(func, "__name__", "?"))
        return submit(self, func, *args, **kwargs)

    monkeypatch.setattr(distributed.Client, "submit", spy)
    plan = write_plan(tmp_path / "segments.json", sample_truth)
    with LoopbackDashScope() as server:
        monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", server.base_http_api_url)
        monkeypatch.setenv("DASHSCOPE_API_KEY", server.api_key)
        config = build_config(
            video=sample_video, langs="ja,ko", out=tmp_path / "out", cache_dir=tmp_path / "cache",
            separator="none", segments=plan, retry_base_delay_s=0.01,
        )  # fmt: skip
        runner = make_task_runner("dask", workers=2)
        result = dub.with_options(task_runner=runner)(config)
        tts = server.count("tts")
    n_lines = len(sample_truth["sentences"])
    assert submitted.count("tts") == 2 * n_lines  # one task per line and language
    for stage in ("translate", "lines", "assemble"):
        assert submitted.count(stage) == 2, (stage, submitted)
    assert result.video is not None
    audio = [s for s in ffprobe_streams(result.video) if s["codec_type"] == "audio"]
    assert [s.get("tags", {}).get("language") for s in audio] == ["eng", "jpn", "kor"]
    assert tts == 2 * len(sample_truth["sentences"])


# ----------------------------------------------------------------------- global concurrency limits


def test_global_rate_limit_recipe_paces_callers(prefect_harness) -> None:
    """docs/operations.md's command, verbatim, creates the limit; `rate_limit()` (what every process calling
    DashScope would wrap each request in) then admits a burst of `limit` and `slot decay` per second after."""
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import rate_limit

    docs = (ROOT / "docs" / "operations.md").read_text()
    command = "prefect gcl create dashscope-tts --limit 8 --slot-decay-per-second 3"
    assert command in docs
    prefect_cli(*command.split()[1:], env=harness_env())
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name("dashscope-tts")
    assert (limit.limit, limit.slot_decay_per_second, limit.active) == (8, 3.0, True)

    calls = 8 + 3  # the burst, then one second's worth of decay
    t0 = time.monotonic()
    for _ in range(calls):
        rate_limit("dashscope-tts", strict=True)
    assert time.monotonic() - t0 >= 0.8  # 3 calls past the burst need >= 1 s of decay (some already ran)
