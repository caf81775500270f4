"""pyproject.toml declares exactly what the project's packages import (and the lock pins all of it)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["core", "text", "audio", "cloning", "models", "tasks", "flows", "webstudio"]
NAMESPACE_PACKAGES = {"pyannote"}  # `pyannote.audio` and `pyannote.core` are different distributions
# Declared without an import of their own, each for a reason the import graph cannot show.
DECLARED_FOR_OTHERS = {
    "torchaudio": "qwen-tts imports it; pinned next to torch so the pair matches (scripts/fix_torchaudio.py)",
    "setuptools": "resemblyzer's webrtcvad imports pkg_resources, removed from setuptools 81",
}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    assert match, requirement
    return normalize(match.group(0))


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {requirement_name(r) for r in project["dependencies"]}
    names |= {requirement_name(r) for r in project["optional-dependencies"]["diarization"]}
    return names


def imported_modules() -> dict[str, set[str]]:
    """Third-party module names imported anywhere in the project's packages -> files importing them."""
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        for file in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    parts = name.split(".")
                    if parts[0] in sys.stdlib_module_names or parts[0] in PACKAGES:
                        continue
                    key = ".".join(parts[:2]) if parts[0] in NAMESPACE_PACKAGES else parts[0]
                    found.setdefault(key, set()).add(str(file.relative_to(ROOT)))
    return found


def distribution_of(module: str) -> str:
    if "." in module:  # a namespace package's portion: its distribution carries the dotted name
        return normalize(module)
    distributions = packages_distributions().get(module)
    assert distributions, f"{module} is imported but no installed distribution provides it"
    return normalize(distributions[0])


def test_every_import_is_declared() -> None:
    missing = {
        f"{distribution_of(module)} (import {module} in {', '.join(sorted(files))})"
        for module, files in imported_modules().items()
        if distribution_of(module) not in declared()
    }
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"


def test_every_declared_dependency_is_imported() -> None:
    used = {distribution_of(module) for module in imported_modules()}
    unused = declared() - used - set(DECLARED_FOR_OTHERS)
    assert not unused, f"declared in pyproject.toml but imported nowhere: {sorted(unused)}"


def test_every_declared_dependency_is_pinned_in_the_lock() -> None:
    lock = (ROOT / "requirements" / "lock-cpu.txt").read_text().split()
    pinned = {requirement_name(line) for line in lock if "==" in line}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {requirement_name(r) for r in project["dependencies"]}
    assert runtime <= pinned, f"declared but not pinned: {sorted(runtime - pinned)}"
