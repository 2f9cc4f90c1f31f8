#!/usr/bin/env bash
# Installs every build and test dependency of m2sa from Debian 12's archive.
# Idempotent and non-interactive; used by the README, .ci/run and scripts/demo.sh.
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build ccache lld pkg-config git
  libtorch-dev            # LibTorch 1.13.1 (CPU)
  libgloo-dev             # c10d Gloo headers that libtorch-dev does not pull in
  libopenblas0-openmp     # the default netlib BLAS makes fp32 GEMM 25-50x slower
  libopencv-dev
  nlohmann-json3-dev libcli11-dev libspdlog-dev libgtest-dev
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-deps: all ${#PKGS[@]} packages already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
echo "setup-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup-deps: done"
