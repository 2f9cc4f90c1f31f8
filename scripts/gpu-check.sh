#!/usr/bin/env bash
# The prepared GPU check (docs/DEVELOPING.md, "The GPU check"). On a lent GPU machine, whose python3 holds
# torch 2.11.0+cu130 with CMake, ninja and a C++ compiler but no Debian dev packages and no network, it:
#   1. unpacks the packages of scripts/gpu-bundle.sh (third_party/deb/, carried with the call) into /tmp;
#   2. builds the core tier (M2SA_BUILD_DATA=OFF: core, models, dist, train math, their tests and benchmarks)
#      against python3's torch, into build-gpu/;
#   3. runs the unit and parity tests with M2SA_TEST_DEVICE=cuda (fp32 parity at the fixtures' tolerances, the bf16
#      tests against their relative bounds), the NCCL communicator at world size 1 and one training step of the
#      tiny M2SA model on CUDA;
#   4. runs the GPU benchmarks (LLaMA decode, SAM encoder);
# and prints one summary table (also written to $OUT/summary.txt when $OUT is set, with the full log beside it).
# Without a GPU (this is how it is tested on the CPU machines) it runs the same steps on the CPU, against
# .venv's torch when there is one.
#
# Here:   bash scripts/gpu-bundle.sh
# Device: run(command="bash scripts/gpu-check.sh", carry=["third_party/deb"], timeout_s=540)
# It finishes in about 5 minutes on a 16-core GPU machine; M2SA_GPU_CHECK_QUICK=1 skips the benchmarks.
set -uo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
OUTDIR=${OUT:-/tmp/m2sa-gpu-check}
mkdir -p "$OUTDIR"
LOG="$OUTDIR/gpu-check.log"
: > "$LOG"
BUILD=${BUILD_DIR:-build-gpu}
ROWS=()
row() { ROWS+=("$(printf '| %-44s | %-6s | %s' "$1" "$2" "$3")"); echo "gpu-check: $1: $2 $3" | tee -a "$LOG"; }
elapsed() { echo "$(( $(date +%s) - $1 )) s"; }
summary() {
  {
    echo
    echo "m2sa GPU check, $(date -u +%FT%TZ), $(( $(date +%s) - t0 )) s in all"
    echo "device: $DEVICE_DESC"
    printf '| %-44s | %-6s | %s\n' "step" "result" "detail"
    printf '|%s|%s|%s\n' "----------------------------------------------" "--------" "------------------------------"
    for r in "${ROWS[@]}"; do echo "$r"; done
  } | tee "$OUTDIR/summary.txt"
}
trap summary EXIT

# ---- the device and the python that holds torch ----
if [ -n "${M2SA_PYTHON:-}" ]; then PY=$M2SA_PYTHON
elif command -v nvidia-smi >/dev/null 2>&1; then PY=python3
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3; fi
export M2SA_PYTHON=$PY
torch_info=$("$PY" -W ignore -c 'import torch; print(torch.__version__, int(torch.cuda.is_available()), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")' 2>>"$LOG")
if [ -z "$torch_info" ]; then row "torch from $PY" FAIL "cannot import torch"; exit 1; fi
read -r TORCH_VERSION HAS_CUDA GPU_NAME <<< "$torch_info"
if [ "$HAS_CUDA" = 1 ]; then DEVICE=cuda; else DEVICE=cpu; fi
DEVICE_DESC="$GPU_NAME ($DEVICE), torch $TORCH_VERSION, $(nproc) cores"
row "torch" ok "$TORCH_VERSION at $("$PY" -c 'import sys; print(sys.executable)'), device $DEVICE"

# ---- dependencies: the carried Debian packages, else this machine's own ----
EXTRA_PREFIX=""
if compgen -G "third_party/deb/*.deb" >/dev/null; then
  DEPS=/tmp/m2sa-deps
  rm -rf "$DEPS"
  for f in third_party/deb/*.deb; do dpkg -x "$f" "$DEPS" || { row "unpack $f" FAIL ""; exit 1; }; done
  EXTRA_PREFIX="$DEPS/usr"
  row "dependencies" ok "$(ls third_party/deb/*.deb | wc -l) carried packages unpacked into $DEPS"
elif [ -f /usr/include/nlohmann/json.hpp ] && [ -f /usr/include/gtest/gtest.h ]; then
  row "dependencies" ok "this machine's packages"
else
  row "dependencies" FAIL "no third_party/deb (run scripts/gpu-bundle.sh here and carry it) and no system packages"
  exit 1
fi

# ---- configure and build the core tier ----
tb=$(date +%s)
read -r -a torch_args <<< "$(bash scripts/torch-cmake-args.sh)"
if [ -n "$EXTRA_PREFIX" ]; then torch_args[0]="${torch_args[0]};$EXTRA_PREFIX"; fi
# Small unity batches keep 16 cores busy; on the CPU fallback the default batches share objects with build/.
if [ "$DEVICE" = cuda ]; then batch=4; else batch=16; fi
if ! cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DM2SA_BUILD_DATA=OFF -DM2SA_UNITY_BATCH=$batch \
     "${torch_args[@]}" >>"$LOG" 2>&1; then
  tail -30 "$LOG"; row "configure (core tier)" FAIL "see $LOG"; exit 1
fi
if ! cmake --build "$BUILD" -j "$(nproc)" >>"$LOG" 2>&1; then
  grep -B2 -A12 "error" "$LOG" | head -60; row "build (core tier)" FAIL "$(elapsed "$tb")"; exit 1
fi
row "build core + tests + benchmarks" ok "$(elapsed "$tb"), $(nproc) jobs"

# ---- tests ----
# run_tests NAME FILTER: the gtest binary on $DEVICE; the row gives gtest's own counts.
run_tests() {
  local name=$1 filter=$2 ts out
  ts=$(date +%s)
  out=$(M2SA_TEST_DEVICE=$DEVICE "$BUILD/m2sa_tests" --gtest_filter="$filter" --gtest_brief=1 2>&1)
  local rc=$?
  echo "$out" >>"$LOG"
  local ran passed skipped
  ran=$(echo "$out" | sed -n 's/^\[==========\] \([0-9]*\) tests\{0,1\} from .* ran\..*/\1/p')
  passed=$(echo "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p')
  skipped=$(echo "$out" | sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p')
  if [ $rc -eq 0 ]; then
    row "$name" ok "${passed:-0} passed, ${skipped:-0} skipped, $(elapsed "$ts")"
  else
    echo "$out" | grep -E "^\[  FAILED  \]|Failure|error" | head -20
    row "$name" FAIL "${passed:-0} passed, $(( ${ran:-0} - ${passed:-0} - ${skipped:-0} )) failed, $(elapsed "$ts")"
  fi
}
run_tests "parity fp32 on $DEVICE" "*Parity*"
run_tests "bf16 tests on $DEVICE" "*Bf16*:*BF16*:*bf16*"
run_tests "NCCL communicator, world size 1" "*Nccl*"
run_tests "tiny M2SA training step on $DEVICE" "M2SATrainStep.*"
run_tests "decoding: CUDA graphs, no host sync per step" "GreedyDecode.*:M2SADecodeSync.*"
run_tests "all core-tier unit tests" "*"

# ---- benchmarks ----
if [ "${M2SA_GPU_CHECK_QUICK:-0}" != 1 ]; then
  if [ "$DEVICE" = cuda ]; then devs=cuda; else devs=cpu; fi
  bench() {
    local name=$1; shift
    local ts out; ts=$(date +%s)
    if out=$(timeout 150 "$@" 2>&1); then
      echo "$out" >>"$LOG"
      row "$name" ok "$(elapsed "$ts")"
      echo "$out" | grep -vE "^\s*$" | tail -12 | sed 's/^/    /'
      ROWS+=("$(echo "$out" | grep -vE '^\s*$' | tail -6 | sed 's/^/|     /')")
    else
      echo "$out" >>"$LOG"; row "$name" FAIL "$(elapsed "$ts"), see $LOG"
    fi
  }
  if [ "$DEVICE" = cuda ]; then
    bench "bench_llama (7B, 32 layers, bf16, CUDA graphs)" "$BUILD/bench/bench_llama" --devices cuda --unfused
    bench "bench_sam (ViT-H encoder, bf16, batch 1 and 8)" "$BUILD/bench/bench_sam" --config vit_h --iters 3 \
      --devices cuda --dtypes bf16 --batch 1,8 --no-decoder
  else
    bench "bench_llama (quick, CPU)" "$BUILD/bench/bench_llama" --quick --devices cpu
    bench "bench_sam (ViT-B, one iteration, CPU)" "$BUILD/bench/bench_sam" --config vit_b --iters 1 --devices cpu \
      --dtypes fp32 --batch 1
  fi
fi
failed=0
for r in "${ROWS[@]}"; do case "$r" in *"| FAIL "*) failed=1 ;; esac; done
exit $failed
