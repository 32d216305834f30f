#!/usr/bin/env bash
# Runs on the GPU machine (device tool), from the repository root, with the
# bundle of scripts/device-bundle.sh carried as out/device:
# bench/hf_trainer_bench.py (HF Trainer GPT-2 124M into a plain directory and
# into a tpded mount). Results go to $OUT (or out/device-bench).
# Usage: scripts/device-bench.sh [rotate|keepall|all] [hf_trainer_bench.py options...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/device-env.sh
results=${OUT:-out/device-bench}
scenario=${1:-all}
shift || true
tag=${BENCH_TAG:-$scenario}
mkdir -p "$results"
{
  echo "== machine"; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
  nproc; free -g | head -2; df -h /var/tmp | tail -1
  python3 -c "import torch, transformers, safetensors; print(torch.__version__, transformers.__version__, safetensors.__version__)"
  echo "== hf_trainer_bench $scenario $*"
  PYTHONUNBUFFERED=1 python3 bench/hf_trainer_bench.py --tpded "$wrap/tpded" --tpdectl "$wrap/tpdectl" \
    --work /var/tmp/tpde-hf-bench --scenario "$scenario" --out "$results/hf_trainer_bench-$tag.json" "$@"
} 2>&1 | tee "$results/bench-$tag.log"
