#!/usr/bin/env bash
# The test command of the README and CI: installs the dependencies, builds, runs every test
# (unit + parity, then the `long` end-to-end tests). Pass `-L unit` or `-R Parity` etc. to select.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
bash scripts/setup-deps.sh
echo "setup: $(( $(date +%s) - t0 )) s"
bash scripts/build.sh -DM2SA_WERROR=ON
export GLIBC_TUNABLES=${GLIBC_TUNABLES:-glibc.malloc.hugetlb=1}
start=$(date +%s)
cd "${BUILD_DIR:-build}"
if [ $# -gt 0 ]; then
  ctest --output-on-failure -j "$(nproc)" "$@"
else
  ctest --output-on-failure -j "$(nproc)" -L unit
  ctest --output-on-failure -L long
fi
echo "tests: $(( $(date +%s) - start )) s"
cd - >/dev/null

# The readers of untrusted bytes once more under ASan + UBSan (build-asan/: only their tests and the fuzz corpus
# replay are built; docs/DEVELOPING.md, "Sanitizers"). M2SA_SKIP_SANITIZE=1 skips this part.
if [ $# -eq 0 ] && [ "${M2SA_SKIP_SANITIZE:-0}" != 1 ]; then
  start=$(date +%s)
  BUILD_DIR=build-asan TARGETS="m2sa_parser_tests m2sa_fuzz_replay" \
    bash scripts/build.sh -DM2SA_SANITIZE=ON -DM2SA_BUILD_BENCH=OFF
  (cd build-asan && ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    ctest --output-on-failure -j "$(nproc)" -L sanitize)
  echo "sanitized tests: $(( $(date +%s) - start )) s"
fi
