# Sourced by the scripts that run on the GPU machine (device tool), from the
# repository root, with the bundle of scripts/device-bundle.sh carried as
# out/device. Sets $wrap to a directory of tpded and tpdectl wrappers: only
# tpde's binaries see the bundled libraries, Python and torch keep the
# machine's own.
bundle=$(realpath out/device)
wrap=$(mktemp -d)
for b in tpded tpdectl gpu_chain_decoder_test content_hash_test gpu_chain_bench bundle_bench spool_write_bench; do
  printf '#!/bin/sh\nLD_LIBRARY_PATH=%s/lib exec %s/bin/%s "$@"\n' "$bundle" "$bundle" "$b" >"$wrap/$b"
  chmod +x "$wrap/$b"
done
