"""The environment the install files build: system tools, and the torchaudio/qwen-tts import trap."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("tool", ["ffmpeg", "ffprobe", "rubberband", "sox"])
def test_system_tools_installed(tool: str) -> None:
    assert shutil.which(tool), f"{tool} missing: scripts/install_system_packages.sh should have installed it"


@pytest.mark.parametrize("lang", ["ja", "ko", "zh"])
def test_a_font_for_each_cjk_script(lang: str) -> None:
    """Without one, Chromium draws the studio's Japanese, Korean and Chinese text as empty boxes."""
    fonts = subprocess.run(["fc-list", f":lang={lang}"], capture_output=True, text=True, timeout=60)
    assert fonts.stdout.strip(), (
        f"no {lang} font: scripts/install_system_packages.sh installs fonts-wqy-microhei"
    )


def test_qwen_tts_imports_in_a_fresh_interpreter() -> None:
    """PyPI's torchaudio 2.11.1 is a CUDA build; on a CPU torch its extension cannot load and breaks
    `import qwen_tts` unless scripts/fix_torchaudio.py removed it."""
    proc = subprocess.run(
        [sys.executable, "-c", "import qwen_tts, torchaudio.compliance.kaldi; print('ok')"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


def test_fix_torchaudio_finds_only_cuda_linked_objects(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("fix_torchaudio", ROOT / "scripts" / "fix_torchaudio.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "_torchaudio.so").write_bytes(b"\x7fELF...NEEDED libc10_cuda.so...")
    (tmp_path / "_cpu_only.so").write_bytes(b"\x7fELF...NEEDED libc10.so...")
    found = [p.name for p in module.cuda_linked_extensions(tmp_path)]
    assert found == ["_torchaudio.so"]


def test_fix_torchaudio_is_idempotent() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "fix_torchaudio.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0
    assert "removed" not in proc.stdout  # already applied by setup; a second run changes nothing


def test_torch_is_the_pinned_build() -> None:
    import torch

    assert torch.__version__.split("+")[0] == "2.13.0"
