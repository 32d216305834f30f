#!/usr/bin/env bash
# Runs on the GPU machine (device tool), from the repository root, with the
# bundle of scripts/device-bundle.sh carried as out/device: the GPU tests,
# the same under compute-sanitizer (memcheck, racecheck), and
# bench/gpu_chain_bench. Results go to $OUT (or out/device-gpu).
# and bench/gpu_mount_bench.py (cold mount reads, --gpu auto vs off).
# and the loader (tests/mount/test_loader.py with CUDA, loader bench).
# and bench/bundle_bench (the daemon's bundle fill strategies).
# Usage: scripts/device-gpu.sh [test|sanitize|bench|mount|loader|trace|bundle]...   (default: test sanitize bench mount loader)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/device-env.sh
results=${OUT:-out/device-gpu}
mkdir -p "$results"
export TPDE_TEST_DATA=$PWD/tests/data
steps=${*:-test sanitize bench mount loader}
{
  echo "== machine"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  nproc
  for step in $steps; do
    case $step in
      test)
        echo "== content_hash_test"
        "$wrap/content_hash_test"
        echo "== gpu_chain_decoder_test"
        "$wrap/gpu_chain_decoder_test" ;;
      sanitize)
        # The synthetic tests (the store test is the same kernels on real data, slow under the tools).
        for tool in memcheck racecheck; do
          echo "== compute-sanitizer --tool $tool"
          LD_LIBRARY_PATH=$bundle/lib compute-sanitizer --tool $tool --error-exitcode 9 \
            "$bundle/bin/gpu_chain_decoder_test" --gtest_filter="-*RealSeries*" 2>&1 | tail -5 || echo "compute-sanitizer $tool: failed"
          LD_LIBRARY_PATH=$bundle/lib compute-sanitizer --tool $tool --error-exitcode 9 \
            "$bundle/bin/content_hash_test" 2>&1 | tail -3 || echo "compute-sanitizer $tool (content hash): failed"
        done ;;
      bench)
        echo "== gpu_chain_bench (1 GB, apply stage also at 8 GB)"
        "$wrap/gpu_chain_bench" --gb 1 --depths 1,4,8 --only apply
        "$wrap/gpu_chain_bench" --gb 8 --depths 1,4,8 --only apply
        "$wrap/gpu_chain_bench" --gb 1 --depths 1,4,8 --only e2e
        "$wrap/gpu_chain_bench" --gb 1 --only hash ;;
      loader)
        echo "== loader tests (CUDA)"
        TPDED="$wrap/tpded" TPDECTL="$wrap/tpdectl" TPDE_CLIENT_LIB="$bundle/lib/libtpde_client.so.0" \
          PYTHONPATH=$PWD/python python3 -W ignore tests/mount/test_loader.py 2>&1 | grep -v "^tpded: note" || true
        TPDED="$wrap/tpded" TPDECTL="$wrap/tpdectl" TPDE_CLIENT_LIB="$bundle/lib/libtpde_client.so.0" \
          PYTHONPATH=$PWD/python python3 -W ignore tests/mount/test_loader_cuda.py 2>&1 | grep -v "^tpded: note" || true
        echo "== loader bench (1 GB, 5 versions)"
        TPDE_CLIENT_LIB="$bundle/lib/libtpde_client.so.0" PYTHONPATH=$PWD/python PYTHONUNBUFFERED=1 \
          python3 bench/gpu_mount_bench.py --tpded "$wrap/tpded" --tpdectl "$wrap/tpdectl" --gb 1 --versions 5 \
          --loader --skip-reads ;;
      trace)
        echo "== loader bench, traced"
        TPDE_LOADER_TRACE=1 TPDE_GPU_TRACE=1 TPDE_CLIENT_LIB="$bundle/lib/libtpde_client.so.0" PYTHONPATH=$PWD/python \
          PYTHONUNBUFFERED=1 python3 bench/gpu_mount_bench.py --tpded "$wrap/tpded" --tpdectl "$wrap/tpdectl" --gb 1 \
          --versions 5 --loader --skip-reads ;;
      bundle)
        echo "== bundle_bench (1 GB; the daemon's half of a load)"
        "$wrap/bundle_bench" --gb 1 --dir /tmp/tpde-bundle-bench --repeats 3 ;;
      mount)
        echo "== gpu_mount_bench (1 GB, 5 versions)"
        PYTHONUNBUFFERED=1 python3 bench/gpu_mount_bench.py --tpded "$wrap/tpded" --tpdectl "$wrap/tpdectl" --gb 1 --versions 5 ;;
    esac
  done
} 2>&1 | tee "$results/gpu.log"
