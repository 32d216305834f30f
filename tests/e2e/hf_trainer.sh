#!/usr/bin/env bash
# End to end with Hugging Face Trainer, for a machine that has transformers,
# safetensors and torch (the GPU machine; not CI): the same tiny GPT-2 run is
# trained twice from the same seed, once with output_dir in a plain directory
# and once in a tpded mount, both with save_total_limit=2; every surviving
# file must be byte-identical and safetensors.torch.load_file from the mount
# must equal the plain copy tensor for tensor.
#
# Usage (as root): tests/e2e/hf_trainer.sh TPDED TPDECTL [WORK_DIR]
set -euo pipefail
tpded=$(realpath "$1")
tpdectl=$(realpath "$2")
work=$(realpath -m "${3:-/tmp/tpde-e2e}")
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}

if mountpoint -q "$work/mnt" 2>/dev/null; then umount -l "$work/mnt"; fi
rm -rf "$work"
mkdir -p "$work/mnt" "$work/plain"
"$tpded" --store "$work/store" --mount "$work/mnt"
trap 'mountpoint -q "$work/mnt" && umount "$work/mnt"' EXIT

"$python" "$here/hf_trainer_run.py" "$work/plain/run"
t0=$(date +%s.%N)
"$python" "$here/hf_trainer_run.py" "$work/mnt/run"
t1=$(date +%s.%N)
"$tpdectl" flush --store "$work/store"

"$python" - "$work/plain/run" "$work/mnt/run" <<'PY'
import hashlib, json, os, sys
import torch
from safetensors.torch import load_file

plain, mnt = sys.argv[1], sys.argv[2]
def files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)
assert files(plain) == files(mnt), (files(plain), files(mnt))
ckpts = sorted(d for d in os.listdir(mnt) if d.startswith("checkpoint-"))
assert len(ckpts) == 2, ckpts  # save_total_limit=2 rotated the others away
device = "cuda:0" if torch.cuda.is_available() else "cpu"
for c in ckpts:
    a = load_file(os.path.join(plain, c, "model.safetensors"))
    b = load_file(os.path.join(mnt, c, "model.safetensors"), device=device)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k].cpu()), (c, k)
    print(c, "model.safetensors from the mount (on %s) equals the plain run: %d tensors" % (device, len(a)))
# Every surviving file reads back as it was when Trainer had just written it.
record = json.load(open(os.path.join(mnt, "..", "run.sha256.json")))
alive = {p: h for p, h in record.items() if os.path.exists(os.path.join(mnt, p))}
bad = [p for p, h in alive.items() if hashlib.sha256(open(os.path.join(mnt, p), "rb").read()).hexdigest() != h]
assert not bad, bad
print("surviving files read back byte-identical:", len(alive))
PY
"$tpdectl" stats --store "$work/store" | tail -5
"$tpdectl" verify --store "$work/store"
"$python" -c "print(\"training run into the mount took %.1f s\" % ($t1 - $t0))"
