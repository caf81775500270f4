"""`pip install .` gives a `qwen-dub` console script whose verbs run the existing `python -m flows.X` entry
points, which keep working on their own."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flows.main import VERBS, available_verbs

ROOT = Path(__file__).resolve().parent.parent


def test_every_verb_points_at_an_entry_point() -> None:
    for name, verb in available_verbs().items():
        entry = getattr(importlib.import_module(verb.module), verb.function)
        assert callable(entry), name
    assert set(available_verbs()) >= {"dub", "consent", "cast", "doctor", "models", "serve"}
    assert ("studio" in available_verbs()) == (ROOT / "flows" / "studio.py").is_file()
    assert "studio" in VERBS  # a row of the table: present once flows/studio.py exists


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip install .` of a copy of the tracked tree (the build writes build/ and *.egg-info beside it)."""
    tmp = tmp_path_factory.mktemp("install")
    source, target = tmp / "src", tmp / "target"
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    for name in tracked.stdout.splitlines():
        if name.endswith((".py", ".toml", ".md", ".txt", ".sh")) and (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return target


def run_script(installed: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = installed / "bin" / "qwen-dub"
    env = {**os.environ, "PYTHONPATH": str(installed)}
    return subprocess.run(
        [sys.executable, str(script), *args], cwd=installed.parent, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def test_pip_install_gives_the_console_script_with_its_verbs(installed: Path) -> None:
    assert "flows.main" in (installed / "bin" / "qwen-dub").read_text()
    listing = run_script(installed, "--help")
    assert listing.returncode == 0, listing.stderr
    for verb in ("dub", "consent", "cast", "doctor", "models", "serve"):
        assert f"\n  {verb} " in listing.stdout
    for verb in ("dub", "doctor", "models", "serve", "cast"):
        proc = run_script(installed, verb, "--help")
        assert proc.returncode == 0 and "usage:" in proc.stdout, (verb, proc.stderr[-2000:])


def test_unknown_verb_like_flag_is_one_error_line(installed: Path) -> None:
    proc = run_script(installed, "--bogus")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: unknown command '--bogus'") and proc.stderr.count("\n") == 1


def test_a_video_without_a_verb_is_a_dub_job() -> None:
    """`qwen-dub VIDEO ...` (the form before verbs) answers exactly as `python -m flows.dub VIDEO ...`."""
    args = ["missing-video.mp4", "--langs", "ja", "--separator", "none"]
    env = {**os.environ, "DASHSCOPE_API_KEY": "sk-test"}
    answers = [
        subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        for module in ("flows.main", "flows.dub")
    ]
    assert answers[0].returncode == answers[1].returncode != 0
    assert answers[0].stderr == answers[1].stderr
    assert answers[0].stderr.startswith("error: ") and "missing-video.mp4" in answers[0].stderr


@pytest.mark.parametrize(
    "module", ["flows.dub", "flows.consent", "flows.cast", "flows.doctor", "flows.model_weights"]
)
def test_python_m_entry_points_keep_working(module: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stderr[-2000:]
