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
