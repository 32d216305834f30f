#!/usr/bin/env bash
# The main job on the sample checkpoints bundled in tests/data: install the
# dependencies, build, start tpded on a fresh store, write the series through
# the mount (cp -r, as a training job's output would land), wait until it is
# committed, print stats, compare the sha256 of every file read back through
# the mount, verify every chunk, then stop the daemon and check an offline
# export too. Needs root (FUSE).
# Usage: scripts/run-sample.sh [WORK_DIR]   (default: out/sample)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh

work=$(realpath -m "${1:-out/sample}")
store=$work/store
mnt=$work/mnt
tpded=build/daemon/tpded
tpdectl=build/tools/tpdectl
if mountpoint -q "$mnt" 2>/dev/null; then umount "$mnt"; fi
rm -rf "$work"
mkdir -p "$mnt"

echo "== tpded --store $store --mount $mnt"
"$tpded" --store "$store" --mount "$mnt"
trap 'mountpoint -q "$mnt" && umount "$mnt"' EXIT

echo "== copy tests/data into the mount, checkpoints in step order (as training writes them)"
time for series in tests/data/*/; do
  name=$(basename "$series")
  mkdir -p "$mnt/$name"
  for ckpt in $(ls -v "$series"); do cp -r "$series/$ckpt" "$mnt/$name/"; done
done
"$tpdectl" flush --store "$store"
# The daemon demotes each older checkpoint to a delta against its successor in
# the background; `gc` runs that work now and waits for it.
"$tpdectl" gc --store "$store"

echo "== stats"
"$tpdectl" stats --store "$store"

echo "== sha256 of every file, original vs read back through the mount"
(cd tests/data && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$work/original.sha256"
(cd "$mnt" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$work/mount.sha256"
if cmp -s "$work/original.sha256" "$work/mount.sha256"; then
  echo "all $(wc -l <"$work/original.sha256") files identical"
else
  diff "$work/original.sha256" "$work/mount.sha256" || true
  echo "files read back through the mount differ from the originals" >&2
  exit 1
fi

echo "== verify"
"$tpdectl" verify --store "$store"
ratio=$("$tpdectl" stats --store "$store" --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
print("ratio %.3fx: %d bytes stored in %d" % (s["ratio"], s["logical_bytes"], s["stored_bytes"]))')

echo "== stop the daemon; offline export"
umount "$mnt"
for _ in $(seq 100); do "$tpdectl" ls --store "$store" >/dev/null 2>&1 && break; sleep 0.1; done
"$tpdectl" export / "$work/export" --store "$store"
(cd "$work/export" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$work/export.sha256"
cmp -s "$work/original.sha256" "$work/export.sha256" && echo "offline export identical"
echo "$ratio"
