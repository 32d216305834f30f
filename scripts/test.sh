#!/usr/bin/env bash
# Every test: installs the dependencies, then
#   1. a Release build with warnings as errors, and all ctest tests;
#   2. the same tests built with AddressSanitizer + UndefinedBehaviorSanitizer;
#   3. the libFuzzer targets (clang), each for a fixed number of runs.
# Ends with one line "tests: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
jobs=$(nproc)
passed=0
failed=0

run_ctest() {  # build dir, label
  local log rc=0
  log=$(mktemp)
  (cd "$1" && ctest --output-on-failure -j"$jobs" --timeout 900) 2>&1 | tee "$log" || rc=$?
  local total fails
  total=$(sed -n 's/.*tests failed out of \([0-9]*\).*/\1/p' "$log" | tail -1)
  fails=$(sed -n 's/.* \([0-9]*\) tests failed out of.*/\1/p' "$log" | tail -1)
  total=${total:-0}
  fails=${fails:-0}
  if [[ $rc -ne 0 && $fails -eq 0 ]]; then fails=1; fi
  passed=$((passed + total - fails))
  failed=$((failed + fails))
  echo "== $2: $((total - fails)) passed, $fails failed"
  rm -f "$log"
}

echo "== 1. Release build, warnings as errors"
bash scripts/build.sh
run_ctest build "release"

echo "== 2. AddressSanitizer + UndefinedBehaviorSanitizer"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTPDE_WERROR=ON -DTPDE_SANITIZE=ON \
  -DTPDE_BUILD_BENCH=OFF >/dev/null
cmake --build build-asan
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  run_ctest build-asan "sanitizers"

echo "== 3. fuzzers"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTPDE_FUZZ=ON \
  -DTPDE_BUILD_TESTS=OFF -DTPDE_BUILD_BENCH=OFF >/dev/null
cmake --build build-fuzz
for f in safetensors chunk; do
  corpus=$(mktemp -d)
  cp tests/fuzz/corpus/$f/* "$corpus"/
  if build-fuzz/tests/fuzz/${f}_fuzzer -runs=200000 -max_len=8192 -seed=1 "$corpus" >"$corpus.log" 2>&1; then
    echo "ok: ${f}_fuzzer, $(grep -o 'Done [0-9]* runs' "$corpus.log")"
    passed=$((passed + 1))
  else
    tail -40 "$corpus.log"
    echo "FAIL: ${f}_fuzzer"
    failed=$((failed + 1))
  fi
  rm -rf "$corpus" "$corpus.log"
done

echo "tests: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
