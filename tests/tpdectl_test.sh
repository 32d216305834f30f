#!/usr/bin/env bash
# End-to-end test of tpdectl on the bundled series: import, stats, export,
# sha256 comparison, verify, rm + gc; and the one-line errors it promises.
# Usage: TPDECTL=path/to/tpdectl tpdectl_test.sh DATA_DIR
set -euo pipefail
data=$1
tpdectl=${TPDECTL:?}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
store=$work/store
passed=0
failed=0
ok() { echo "ok: $1"; passed=$((passed + 1)); }
fail() { echo "FAIL: $1"; failed=$((failed + 1)); }

"$tpdectl" import "$data" --store "$store" --prefix runs >"$work/import.out"
grep -q "imported" "$work/import.out" && ok "import" || fail "import"

"$tpdectl" stats --store "$store" --json >"$work/stats.json"
python3 - "$work/stats.json" <<'PY' && ok "stats --json" || fail "stats --json"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["files"] > 30 and s["ratio"] > 1.2, s["ratio"]
assert any(f["chain_depth"] > 0 for f in s["per_file"])
PY

"$tpdectl" export runs "$work/out" --store "$store" >/dev/null
(cd "$data" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$work/a.sha"
(cd "$work/out" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$work/b.sha"
cmp -s "$work/a.sha" "$work/b.sha" && ok "export is sha256-identical" || fail "export differs"

"$tpdectl" export runs/B-finetune-bf16/checkpoint-60/model.safetensors "$work/one" --store "$store" >/dev/null
cmp -s "$data/B-finetune-bf16/checkpoint-60/model.safetensors" "$work/one/model.safetensors" \
  && ok "export of one file" || fail "export of one file"

"$tpdectl" verify --store "$store" | grep -q ": OK" && ok "verify" || fail "verify"
"$tpdectl" ls runs/B-finetune-bf16 --store "$store" | grep -q "checkpoint-20/" && ok "ls" || fail "ls"

"$tpdectl" rm runs/B-finetune-bf16/checkpoint-20 --store "$store"
"$tpdectl" verify --store "$store" >/dev/null && ok "rm of a chain root, then verify" || fail "rm then verify"
"$tpdectl" export runs/B-finetune-bf16/checkpoint-100 "$work/b100" --store "$store" >/dev/null
cmp -s "$data/B-finetune-bf16/checkpoint-100/model.safetensors" "$work/b100/model.safetensors" \
  && ok "dependent readable after rm" || fail "dependent after rm"

expect_error() {  # name, expected text, command...
  local name=$1 text=$2
  shift 2
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  if [[ $rc -ne 0 && $(wc -l <<<"$out") -eq 1 && $out == *"$text"* ]]; then ok "$name"; else fail "$name: rc=$rc '$out'"; fi
}
expect_error "missing store" "does not exist" "$tpdectl" stats --store "$work/nope"
expect_error "unknown path" "not found" "$tpdectl" export runs/nope "$work/x" --store "$store"
# Another process holds the store's lock (RocksDB takes an fcntl write lock
# on STORE/LOCK, as a running tpded or tpdectl does).
python3 -c '
import fcntl, sys, time
f = open(sys.argv[1], "r+")
fcntl.lockf(f, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(30)
' "$store/LOCK" >"$work/lock.out" &
holder=$!
for _ in $(seq 50); do grep -q locked "$work/lock.out" 2>/dev/null && break; sleep 0.1; done
expect_error "locked store" "in use by another process" "$tpdectl" ls --store "$store"
kill "$holder"
wait "$holder" 2>/dev/null || true

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
