#!/usr/bin/env bash
# The main job on the sample checkpoints bundled in tests/data: install the
# dependencies, build, import the series into a fresh store, print stats,
# export everything back, compare sha256 of every file, and verify the store.
# Usage: scripts/run-sample.sh [STORE_DIR]   (default: out/sample-store)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh

store=${1:-out/sample-store}
exported=out/sample-export
rm -rf "$store" "$exported"
tpdectl=build/tools/tpdectl

echo "== import tests/data -> $store"
"$tpdectl" import tests/data --store "$store"
echo "== stats"
"$tpdectl" stats --store "$store"
echo "== export -> $exported"
"$tpdectl" export / "$exported" --store "$store"
echo "== sha256 of every file, original vs exported"
(cd tests/data && find . -type f -print0 | sort -z | xargs -0 sha256sum) >out/sample-original.sha256
(cd "$exported" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >out/sample-exported.sha256
if cmp -s out/sample-original.sha256 out/sample-exported.sha256; then
  echo "all $(wc -l <out/sample-original.sha256) files identical"
else
  diff out/sample-original.sha256 out/sample-exported.sha256 || true
  echo "exported files differ from the originals" >&2
  exit 1
fi
echo "== verify"
"$tpdectl" verify --store "$store"
"$tpdectl" stats --store "$store" --json | python3 -c \
  'import json,sys; s=json.load(sys.stdin); print(f"ratio {s[\"ratio\"]:.3f}x: {s[\"logical_bytes\"]} bytes stored in {s[\"stored_bytes\"]}")'
