#!/usr/bin/env bash
# Builds the libFuzzer binaries (fuzz/*_fuzz.cpp; CMake -DM2SA_FUZZ=ON with clang-14, ASan + UBSan, into
# build-fuzz/) and runs each target for SECONDS_PER_TARGET seconds, one after the other on one core.
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET (default 60; 0 builds only)] [TARGETS... (default: all)]
# Each run starts from the seeds (fuzz/corpus/<target>/) plus a working corpus (fuzz/work/<target>/, git-ignored,
# kept between runs); a crashing input is copied to fuzz/regressions/<target>/, which the replay test
# (m2sa_fuzz_replay, ctest -L unit) then runs in every build. Prints per target: executions, exec/s, cov / ft from
# libFuzzer's last stats line, and crashes. Logs: build-fuzz/logs/<target>.log.
# JOBS (default 1) builds; M2SA_VENV / M2SA_PYTHON pick the LibTorch as for scripts/build.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
[ $# -gt 0 ] && shift
BUILD_DIR=${FUZZ_BUILD_DIR:-build-fuzz}
JOBS=${JOBS:-1}

# clang-14 and its runtime (libFuzzer, sanitizers) from Debian.
if ! command -v clang++-14 >/dev/null || ! ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a \
    >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends clang-14 libclang-rt-14-dev
fi

export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  read -r -a torch_args <<< "$(bash scripts/torch-cmake-args.sh)"
  # Tests and benchmarks are not needed; RelWithDebInfo keeps the fuzzer fast and the stacks readable.
  CC=clang-14 CXX=clang++-14 cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DM2SA_FUZZ=ON -DM2SA_BUILD_TESTS=OFF -DM2SA_BUILD_BENCH=OFF "${torch_args[@]}"
fi

all_targets=()
for f in fuzz/*_fuzz.cpp; do
  n=$(basename "$f" _fuzz.cpp)
  all_targets+=("$n")
done
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all_targets[@]}")
cmake --build "$BUILD_DIR" -j "$JOBS" --target "${targets[@]/#/fuzz_}"
[ "$SECS" -eq 0 ] && exit 0

# Inputs larger than the biggest seed get little from the fuzzer and cost time: cap at 4x the biggest seed
# (at least 4 KiB, at most 64 KiB).
max_len() {
  local biggest
  biggest=$(find "fuzz/corpus/$1" -type f -printf '%s\n' 2>/dev/null | sort -n | tail -1)
  biggest=$(( ${biggest:-1024} * 4 ))
  (( biggest < 4096 )) && biggest=4096
  (( biggest > 65536 )) && biggest=65536
  echo "$biggest"
}

mkdir -p "$BUILD_DIR/logs"
summary=()
for t in "${targets[@]}"; do
  work="fuzz/work/$t"
  crashes="$BUILD_DIR/crashes/$t"
  mkdir -p "$work" "$crashes" "fuzz/corpus/$t"
  log="$BUILD_DIR/logs/$t.log"
  echo "fuzz: $t for ${SECS} s (log $log)"
  start=$(date +%s)
  # -fork / -jobs stay off: one process on one core. A crash stops the run (libFuzzer's default), its input goes
  # to the crashes folder and then to fuzz/regressions.
  # UBSan aborts with a stack (halt_on_error); ASan's leak checker is off: LibTorch's static caches look like leaks.
  set +e
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    taskset -c "${FUZZ_CPU:-0}" "$BUILD_DIR/fuzz/fuzz_$t" "$work" "fuzz/corpus/$t" \
      -max_total_time="$SECS" -max_len="$(max_len "$t")" -rss_limit_mb=4096 -timeout=25 \
      -artifact_prefix="$crashes/" -print_final_stats=1 > "$log" 2>&1
  rc=$?
  set -e
  elapsed=$(( $(date +%s) - start ))
  stats=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(sed -nE 's/.*cov: ([0-9]+).*/\1/p' <<< "$stats")
  ft=$(sed -nE 's/.*ft: ([0-9]+).*/\1/p' <<< "$stats")
  execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log" | tail -1)
  eps=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+)/\1/p' "$log" | tail -1)
  found=0
  for c in "$crashes"/*; do
    [ -f "$c" ] || continue
    mkdir -p "fuzz/regressions/$t"
    cp "$c" "fuzz/regressions/$t/"
    found=$((found + 1))
  done
  rm -f "$crashes"/*
  summary+=("$(printf '%-18s %6s s %10s execs %7s exec/s  cov %6s  ft %7s  crashes %s  (rc %s)' \
    "$t" "$elapsed" "${execs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "$found" "$rc")")
  echo "${summary[-1]}"
done
echo
echo "fuzz summary"
printf '%s\n' "${summary[@]}"
