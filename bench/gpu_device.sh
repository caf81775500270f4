#!/usr/bin/env bash
# The device-machine script for bench.gpu (see bench/README.md, "bench.gpu"): installs the wheels carried
# in .whl/ into /tmp/site (the machine has no registry), then `smoke` runs the GPU tests and every benchmark
# part at toy sizes, `full` the whole benchmark. Everything it prints lands in $OUT/log.txt too.
set -o pipefail
MODE=${1:-full}
shift || true
OUT=${OUT:-/tmp/bench-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export TOKENIZERS_PARALLELISM=false PREFECT_SERVER_ANALYTICS_ENABLED=false
{
  started=$(date +%s)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl || { echo "wheel install failed"; exit 3; }
  export PYTHONPATH=/tmp/site
  echo "## wheels installed in $(( $(date +%s) - started )) s"
  nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv,noheader
  python3 -c "import torch, transformers, tokenizers, huggingface_hub, qwen_tts; \
print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0)); \
print('transformers', transformers.__version__, 'tokenizers', tokenizers.__version__, \
'huggingface_hub', huggingface_hub.__version__)" 2>&1 | grep -v '^\*\|^Warning: flash-attn\|^ *$'
  ldconfig -p | grep -E "libcublas\.so|libcudnn\.so\.9" | head -4
  status=0
  if [ "$MODE" = smoke ]; then
    echo "## pytest -m gpu tests/test_gpu.py"
    timeout 150 python3 -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider --timeout 120 || status=1
    echo "## bench.gpu --quick"
    timeout 150 python3 -m bench.gpu --quick --budget-s 120 "$@" || status=1
  else
    python3 -m bench.gpu "$@" || status=1
  fi
  echo "## $MODE finished in $(( $(date +%s) - started )) s, status $status"
  exit $status
} 2>&1 | tee "$OUT/log.txt"
