#!/usr/bin/env bash
# Packs what the GPU machine needs to run tpde without its libraries
# installed: the binaries from build/ and every shared library they use that
# is not part of the C/C++ runtime (the GPU machine has no RocksDB or fuse3).
# Usage: scripts/device-bundle.sh [OUT_DIR]   (default: out/device)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/device}
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib"
cp build/daemon/tpded build/tools/tpdectl "$out/bin/"
# The GPU tests and benchmarks (where the build has CUDA), bundle_bench and spool_write_bench.
for b in build/tests/gpu_chain_decoder_test build/tests/content_hash_test build/bench/gpu_chain_bench build/bench/bundle_bench build/bench/spool_write_bench; do
  if [ -x "$b" ]; then cp "$b" "$out/bin/"; fi
done
strip "$out/bin/"*
cp -L build/client/libtpde_client.so.0 "$out/lib/"   # the loader; RPATH $ORIGIN
for bin in "$out"/bin/* "$out"/lib/libtpde_client.so.0; do
  ldd "$bin" | awk '/=> \//{print $3}'
done | sort -u | while read -r lib; do
  case $(basename "$lib") in
    libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|libstdc++.so*|libgcc_s.so*|ld-linux*) ;;
    *) cp -L "$lib" "$out/lib/" ;;
  esac
done
du -sh "$out"
