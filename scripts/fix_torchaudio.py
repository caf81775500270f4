"""Make `import qwen_tts` work with a CPU-only torch.

PyPI's torchaudio 2.11.1 wheel is a CUDA build: its compiled extension `torchaudio/lib/_torchaudio.so`
links libc10_cuda.so / libtorch_cuda.so, which a CPU torch does not ship. qwen_tts imports
`torchaudio.compliance.kaldi` at import time, so the failed dlopen breaks `import qwen_tts` entirely.
torchaudio falls back to its pure-Python implementation when `_torchaudio.so` is absent (`_load_lib`
returns False for a missing file), and that pure-Python part is all qwen-tts uses (kaldi fbank).
So on a CPU torch we delete exactly the extension files that cannot load. On a CUDA torch nothing
changes. tests/test_install.py checks the outcome (`import qwen_tts` in a fresh interpreter).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

CUDA_LIBRARIES = ("libc10_cuda.so", "libtorch_cuda.so")


def torch_has_cuda() -> bool:
    out = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.version.cuda or '')"],
        check=True,
        capture_output=True,
        text=True,
    )
    return bool(out.stdout.strip())


def cuda_linked_extensions(lib_dir: Path) -> list[Path]:
    """Shared objects in lib_dir whose dynamic section names a CUDA torch library."""
    found = []
    for so in sorted(lib_dir.glob("*.so")):
        data = so.read_bytes()
        if any(name.encode() in data for name in CUDA_LIBRARIES):
            found.append(so)
    return found


def main() -> int:
    spec = importlib.util.find_spec("torchaudio")
    if spec is None or spec.origin is None:
        return 0
    if torch_has_cuda():
        return 0
    lib_dir = Path(spec.origin).parent / "lib"
    for so in cuda_linked_extensions(lib_dir):
        so.unlink()
        print(f"fix_torchaudio: removed {so.name} (CUDA build on a CPU torch; pure-Python fallback used)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
