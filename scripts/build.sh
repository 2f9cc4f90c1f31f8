#!/usr/bin/env bash
# Configures and builds m2sa into build/ (Release, Ninja, ccache, lld) against the LibTorch of scripts/setup-deps.sh
# (scripts/torch-cmake-args.sh). Extra args go to cmake, which then configures again even when the build folder
# exists (e.g. `bash scripts/build.sh -DM2SA_WITH_NCCL=OFF`); without any, an existing folder is only built.
# TARGETS="m2sa" builds only those targets (the demo needs the CLI alone); default: everything.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
# Paths under the checkout (sources, .venv) enter ccache relative to it, so another clone reuses the objects.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
read -r -a torch_args <<< "$(bash scripts/torch-cmake-args.sh)"
# A build folder configured against another LibTorch (Debian's 1.13, another venv) is configured afresh.
torch_prefix=${torch_args[0]#-DCMAKE_PREFIX_PATH=}
if [ -f "$BUILD_DIR/CMakeCache.txt" ] && ! grep -q "^Torch_DIR:PATH=$torch_prefix/Torch$" "$BUILD_DIR/CMakeCache.txt"; then
  echo "build: $BUILD_DIR was configured against another LibTorch; configuring again"
  rm -f "$BUILD_DIR/CMakeCache.txt" "$BUILD_DIR/build.ninja"
fi
if [ ! -f "$BUILD_DIR/build.ninja" ] || [ $# -gt 0 ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release "${torch_args[@]}" "$@"
fi
start=$(date +%s)
# shellcheck disable=SC2086
cmake --build "$BUILD_DIR" -j "$JOBS" ${TARGETS:+--target $TARGETS}
echo "build: $(( $(date +%s) - start )) s"
