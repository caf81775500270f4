#!/usr/bin/env bash
# Creates .venv with the pinned Python stack; a no-op when the lock file and this script are unchanged.
#
#   QWENDUB_TORCH=cpu  (default) torch 2.13.0 CPU build, from requirements/lock-cpu.txt.
#   QWENDUB_TORCH=cuda the same lock, but torch==2.13.0 from PyPI (a CUDA 12 build on Linux x86_64) and
#                      torchaudio's CUDA extension kept; see README "GPU install".
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
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
  # The lock pins the local CPU wheel (torch==2.13.0+cpu); on a GPU machine take PyPI's CUDA build.
  grep -v '^torch==' "$LOCK" > "$VENV/lock-cuda.txt"
  "${pip[@]}" torch==2.13.0
  "${pip[@]}" -r "$VENV/lock-cuda.txt"
else
  # torch first and alone: an unpinned dependency must never pull a multi-GB CUDA torch from PyPI.
  "${pip[@]}" "$(grep '^torch==' "$LOCK")"
  "${pip[@]}" -r "$LOCK"
fi
"${pip[@]}" --no-deps -e .
"$VENV/bin/python" scripts/fix_torchaudio.py
echo "$fingerprint" > "$STAMP"
