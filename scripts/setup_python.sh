#!/usr/bin/env bash
# Creates .venv with the pinned Python stack; a no-op when the lock file and this script are unchanged.
#
#   QWENDUB_TORCH=cpu  (default) torch 2.13.0 CPU build: from a local wheel when pip's configuration
#                      offers one (find-links or an index with the +cpu build), else from the PyTorch CPU
#                      index (QWENDUB_TORCH_INDEX, default https://download.pytorch.org/whl/cpu). PyPI's own
#                      torch 2.13.0 for Linux x86_64 is a multi-GB CUDA build.
#   QWENDUB_TORCH=cuda the same lock, but torch==2.13.0 from PyPI (a CUDA 12 build on Linux x86_64) and
#                      torchaudio's CUDA extension kept; see README "GPU install".
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
TORCH_INDEX=${QWENDUB_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
PYTHON=${PYTHON:-python3}
TORCH_VARIANT=${QWENDUB_TORCH:-cpu}
LOCK=requirements/lock-cpu.txt
STAMP="$VENV/.qwendub-installed"

fingerprint=$(cat "$LOCK" pyproject.toml scripts/setup_python.sh scripts/fix_torchaudio.py | sha256sum | cut -c1-16)
fingerprint="$fingerprint-$TORCH_VARIANT"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$fingerprint" ]; then
  exit 0
fi

"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || echo "warning: the lock file was made with Python 3.11; $("$PYTHON" --version) may not resolve it" >&2
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)

echo "installing the Python environment into $VENV (first run: a few minutes)"
if [ "$TORCH_VARIANT" = cuda ]; then
  # PyPI's torch==2.13.0 for Linux x86_64 is the CUDA 12 build: the lock's plain pin takes it.
  "${pip[@]}" -r "$LOCK"
else
  # torch first and alone, the CPU build: an unpinned dependency must never pull a multi-GB CUDA torch
  # from PyPI. The lock pins plain `torch==2.13.0` (a `+cpu` label exists on no public index but
  # PyTorch's), which matches the `+cpu` wheel wherever one is offered. When pip's own configuration
  # already offers it (a wheel folder, a mirror), use that; otherwise name the PyTorch CPU index.
  torch_pin=$(grep '^torch==' "$LOCK")
  offered=$("$VENV/bin/python" -m pip install --disable-pip-version-check --dry-run --no-deps \
    --ignore-installed --quiet --report - "$torch_pin" 2>/dev/null \
    | "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["install"][0]["metadata"]["version"])' \
    2>/dev/null || true)
  if [[ "$offered" == *+cpu ]]; then
    "${pip[@]}" "$torch_pin"
  else
    "${pip[@]}" --extra-index-url "$TORCH_INDEX" "$torch_pin"
  fi
  "${pip[@]}" -r "$LOCK"
fi
"${pip[@]}" --no-deps -e .
"$VENV/bin/python" scripts/fix_torchaudio.py
echo "$fingerprint" > "$STAMP"
