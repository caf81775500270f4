"""requirements/lock-cpu.txt installs from public indexes: exact pins only, no local version labels, no
path/file/URL references, and the pins resolve together.

What this machine can show, and what it cannot:
- resolution together (with dependencies) runs through this machine's pip configuration, which adds a local
  wheel folder and PyPI mirrors to PyPI: torch resolves to the folder's 2.13.0+cpu wheel, as it would to the
  PyTorch CPU index's on a user's machine (scripts/setup_python.sh names that index when pip offers no +cpu
  build). Linux x86_64 + CPython 3.11 is this machine's own platform, so no --platform emulation is needed.
- "public indexes can serve every pin" runs against https://pypi.org/simple alone (pip --isolated: no local
  folder, no mirror, no constraints), without dependencies (with them, PyPI's torch pulls its CUDA wheels'
  metadata; the dependency closure is the first check's). download.pytorch.org is unreachable here, so the
  +cpu build's presence there is not checked; PyPI's plain torch==2.13.0 is.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "lock-cpu.txt"
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[0-9][0-9A-Za-z.!]*)$")


def lock_lines() -> list[str]:
    return [
        line.strip() for line in LOCK.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]


def test_every_line_is_an_exact_public_pin() -> None:
    bad = [line for line in lock_lines() if not PIN.match(line)]
    assert not bad, f"not a plain `name==version` pin (local label, path, URL or option): {bad}"


def test_no_local_version_labels_paths_or_urls() -> None:
    text = LOCK.read_text()
    assert "+" not in text, "a local version label (e.g. +cpu) exists on no public index but PyTorch's"
    for marker in ("file:", "://", " @ ", "-e ", "--", "/"):
        assert marker not in text, f"{marker!r} in the lock: installs must not depend on this machine"


def test_the_lock_is_the_tested_torch() -> None:
    assert "torch==2.13.0" in lock_lines()


def _dry_run(args: list[str], tmp_path: Path, timeout: int) -> list[dict]:
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--disable-pip-version-check", "--report", str(report), "-r", str(LOCK), *args],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return list(json.loads(report.read_text())["install"])


def _pins() -> dict[str, str]:
    pins = {}
    for line in lock_lines():
        match = PIN.match(line)
        assert match
        pins[re.sub(r"[-_.]+", "-", match["name"]).lower()] = match["version"]
    return pins


def test_the_pins_resolve_together_for_this_platform(tmp_path: Path) -> None:
    """pip's resolver over the whole lock with dependencies: no conflict, and nothing outside the lock."""
    installed = _dry_run([], tmp_path, timeout=600)
    pins = _pins()
    resolved = {
        re.sub(r"[-_.]+", "-", i["metadata"]["name"]).lower(): i["metadata"]["version"] for i in installed
    }
    assert set(resolved) == set(pins), f"outside the lock: {sorted(set(resolved) - set(pins))}"
    for name, version in resolved.items():
        assert version.split("+")[0] == pins[name], (name, version)


def test_pypi_alone_serves_every_pin(tmp_path: Path) -> None:
    """Every pin is downloadable from public PyPI (no local wheel folder, mirror or constraint)."""
    try:
        installed = _dry_run(
            ["--isolated", "--no-deps", "--index-url", "https://pypi.org/simple"], tmp_path, timeout=900
        )
    except AssertionError as exc:
        if "NewConnectionError" in str(exc) or "Failed to establish" in str(exc):
            pytest.fail("pypi.org is unreachable: this check needs it")
        raise
    urls = {
        re.sub(r"[-_.]+", "-", i["metadata"]["name"]).lower(): i["download_info"]["url"] for i in installed
    }
    assert set(urls) == set(_pins())
    assert all(url.startswith("https://files.pythonhosted.org/") for url in urls.values())
