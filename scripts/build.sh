#!/usr/bin/env bash
# Configures and builds m2sa into build/ (Release, Ninja, ccache, lld). Extra args go to cmake.
# TARGETS="m2sa" builds only those targets (the demo needs the CLI alone); default: everything.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
fi
start=$(date +%s)
# shellcheck disable=SC2086
cmake --build "$BUILD_DIR" -j "$JOBS" ${TARGETS:+--target $TARGETS}
echo "build: $(( $(date +%s) - start )) s"
