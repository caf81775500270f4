"""`make demo` picks what this machine can finish, or stops with one line, before anything downloads."""

from __future__ import annotations

import sys

import pytest

from flows.demo import LAPTOP_MEMORY_GIB, SAMPLE, DemoPlan, Machine, main, plan_demo


def test_a_key_takes_the_api_route_whatever_the_machine() -> None:
    plan = plan_demo(Machine(has_key=True, gpu=False, memory_gib=2))
    assert isinstance(plan, DemoPlan) and plan.route == "api"
    assert plan.args == ("--tts", "api", "--translator", "api")


def test_no_key_with_a_gpu_runs_the_local_route_on_it() -> None:
    plan = plan_demo(Machine(has_key=False, gpu=True, memory_gib=2))
    assert isinstance(plan, DemoPlan) and plan.route == "local-gpu" and "cuda" in plan.args


def test_no_key_no_gpu_is_the_laptop_configuration() -> None:
    plan = plan_demo(Machine(has_key=False, gpu=False, memory_gib=LAPTOP_MEMORY_GIB))
    assert isinstance(plan, DemoPlan) and plan.route == "laptop"
    args = dict(zip(plan.args[::2], plan.args[1::2], strict=True))
    assert args == {"--tts": "local", "--tts-size": "0.6B", "--translator": "local", "--asr-model": "tiny",
                    "--separator": "none", "--device": "cpu"}  # fmt: skip
    assert "minutes" in plan.says and "GB" in plan.says  # what it does, how long, what it downloads


def test_the_laptop_options_are_a_valid_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """The options the demo passes are accepted by the real parser and config (nothing is loaded)."""
    from flows.cli import build_parser, config_from_args

    plan = plan_demo(Machine(has_key=False, gpu=False, memory_gib=64))
    assert isinstance(plan, DemoPlan)
    args = build_parser().parse_args([str(SAMPLE), "--langs", "ja,en,ko", *plan.args])
    config = config_from_args(args)
    assert (config.tts, config.tts_size, config.translator, config.separator) == (
        "local",
        "0.6B",
        "local",
        "none",
    )


def test_too_little_memory_stops_with_one_line_naming_both_ways(capsys: pytest.CaptureFixture[str]) -> None:
    before = set(sys.modules)
    code = main([], probe=Machine(has_key=False, gpu=False, memory_gib=4))
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "DASHSCOPE_API_KEY" in lines[0] and "GPU" in lines[0] and "4 GiB" in lines[0]
    assert not {"prefect", "torch", "transformers", "flows.cli"} & (set(sys.modules) - before)
