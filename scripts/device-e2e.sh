#!/usr/bin/env bash
# Runs on the GPU machine (device tool), from the repository root, with the
# bundle of scripts/device-bundle.sh carried as out/device: the HF Trainer end
# to end test through a tpded mount. Results go to $OUT (or out/device-e2e).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/device-env.sh
results=${OUT:-out/device-e2e}
mkdir -p "$results"
{
  echo "== machine"; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
  nproc; uname -r; python3 -c "import torch, transformers, safetensors; print(torch.__version__, transformers.__version__, safetensors.__version__)"
  echo "== tpded"; "$wrap/tpded" --help | head -1
  echo "== hf_trainer e2e"
  bash tests/e2e/hf_trainer.sh "$wrap/tpded" "$wrap/tpdectl" /tmp/tpde-e2e
} 2>&1 | tee "$results/e2e.log"
