#!/usr/bin/env bash
# Installs every Debian package tpde needs to build and test. Idempotent:
# re-running it only installs what is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config ninja-build
  libzstd-dev librocksdb-dev libxxhash-dev
  libfmt-dev nlohmann-json3-dev libcli11-dev libspdlog-dev
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  libfuse3-dev fuse3 libsystemd-dev libmount-dev
  clang libclang-rt-14-dev
  python3 python3-numpy python3-torch
  rsync attr
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all packages present"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
