#!/usr/bin/env bash
# Full-size (7B) measurements on the CPU from seeded random weights in the released layouts (docs/FULL_SIZE.md).
# Not part of CI: each step needs ~16-20 GB of RAM and minutes to hours on 2 cores.
#   bash scripts/bench-7b-cpu.sh STEP...      STEP: write | infer-cold | infer-warm | infer-bin | train-step | train-2ranks
# Environment: OUT (default /work/m2sa-7b: the random-init folder, ~35 GB with the .bin copy), RESULTS (default
# $OUT-results), MIN_AVAIL_GB (default 18: a 7B step waits until `free` says this much is available), DROP_CACHES=1
# (infer-cold: drop the page cache first; needs sudo or root).
set -euo pipefail
cd "$(dirname "$0")/.."
M2SA=${M2SA:-$PWD/build/m2sa}
OUT=${OUT:-/work/m2sa-7b}
RESULTS=${RESULTS:-$OUT-results}
MIN_AVAIL_GB=${MIN_AVAIL_GB:-18}
IMAGE=${IMAGE:-$PWD/tests/fixtures/reference/images/retina.jpg}
QUESTION=${QUESTION:-"Where is the optic disc in this photograph?"}
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-8}
mkdir -p "$RESULTS"

wait_for_memory() {
  while true; do
    avail=$(awk '/MemAvailable/ {printf "%d", $2 / 1048576}' /proc/meminfo)
    [ "$avail" -ge "$MIN_AVAIL_GB" ] && return 0
    echo "bench-7b: $avail GB available, waiting for $MIN_AVAIL_GB GB (other jobs on this machine)" >&2
    sleep 30
  done
}

# Samples every process of the process group led by $1 once a second: the peak VmHWM, RssAnon and RssFile per pid.
poll_rss() {
  python3 - "$1" "$2" <<'PY'
import os, sys, time, json
leader, out = int(sys.argv[1]), sys.argv[2]
peak = {}
def status(pid):
    d = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"):
                    d[k] = int(v.split()[0]) // 1024  # MiB
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            d["cmd"] = f.read().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return None
    return d
while os.path.exists(f"/proc/{leader}"):
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.getpgid(int(pid)) != leader:
                continue
        except OSError:
            continue
        s = status(pid)
        if not s or "m2sa" not in s["cmd"] or "time" in s["cmd"].split()[0]:
            continue
        p = peak.setdefault(pid, {"cmd": s["cmd"]})
        for k in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            p[k] = max(p.get(k, 0), s.get(k, 0))
    with open(out, "w") as f:
        json.dump(peak, f, indent=1)
    time.sleep(1)
PY
}

# measure NAME CMD...: /usr/bin/time -v + the per-process RSS poller; log in $RESULTS/NAME.log.
measure() {
  local name=$1
  shift
  wait_for_memory
  echo "bench-7b: $name: $*" >&2
  set +e
  setsid /usr/bin/time -v -o "$RESULTS/$name.time" "$@" > "$RESULTS/$name.log" 2>&1 &
  local pid=$!
  sleep 0.2
  poll_rss "$pid" "$RESULTS/$name.rss.json" &
  local poller=$!
  wait "$pid"
  local rc=$?
  wait "$poller"
  set -e
  echo "bench-7b: $name: exit $rc, $(grep -E 'Elapsed|Maximum resident' "$RESULTS/$name.time" | tr -s ' ' | tr '\n' ' ')" >&2
  cat "$RESULTS/$name.rss.json" >&2
  return $rc
}

infer() {
  local name=$1 model=$2
  measure "$name" "$M2SA" infer --model "$model" --clip "$OUT/clip-vit-large-patch14" "$IMAGE" "$QUESTION" \
    --precision bf16 --max-new-tokens "$MAX_NEW_TOKENS" --allow-no-seg --out "$RESULTS/$name-out"
}

train_config() {  # $1: run name; one image of one question per step, LoRA, bf16, gradient checkpointing
  local data=$RESULTS/synth
  [ -d "$data" ] || "$M2SA" synth --out "$data" --seed 0 --images 4 --val-images 1 --test-images 1 > /dev/null
  cat > "$RESULTS/$1.json" <<JSON
{
  "model": "$PWD/configs/m2sa-7b.json",
  "init": {"from": "weights", "sam": "$OUT/sam_vit_h_4b8939.pth", "llava_dir": "$OUT/llava",
           "clip_dir": "$OUT/clip-vit-large-patch14"},
  "train_mode": "lora", "precision": "bf16", "device": "cpu",
  "images_per_micro_batch": 1, "gradient_checkpointing": true,
  "data": {"dataset_dir": "$data", "datasets": ["mmr"], "sample_rates": [1], "num_classes_per_sample": 1},
  "train": {"epochs": 1, "steps_per_epoch": 1, "grad_accumulation_steps": 1, "warmup_num_steps": 1,
            "first_step_lr": "deepspeed-0.14", "print_freq": 1, "keep_last_checkpoints": 1},
  "loss": {"ce_loss_weight": 1.0, "bce_loss_weight": 2.0, "dice_loss_weight": 0.5},
  "validation": {"split": "none"},
  "export": "none",
  "run_dir": "$RESULTS/$1-run",
  "seed": 0
}
JSON
  rm -rf "$RESULTS/$1-run"
}

for step in "$@"; do
  case $step in
    write)  # about 1 GB of memory: one tensor at a time
      rm -rf "$OUT"
      /usr/bin/time -v -o "$RESULTS/write.time" "$M2SA" export --random-init --config configs/m2sa-7b.json \
        --out "$OUT" --seed 0 2>&1 | tee "$RESULTS/write.log"
      grep -E 'Elapsed|Maximum resident' "$RESULTS/write.time"
      du -sh "$OUT"/* | tee -a "$RESULTS/write.log" ;;
    infer-cold)
      sync
      if [ "${DROP_CACHES:-1}" = 1 ]; then
        if [ "$(id -u)" = 0 ]; then echo 3 > /proc/sys/vm/drop_caches; else echo 3 | sudo tee /proc/sys/vm/drop_caches > /dev/null; fi
      fi
      infer infer-cold "$OUT/model" ;;
    infer-warm) infer infer-warm "$OUT/model" ;;
    infer-bin) infer infer-bin "$OUT/model-bin" ;;
    train-step)
      train_config train-step
      measure train-step env M2SA_NUM_THREADS=2 "$M2SA" train --config "$RESULTS/train-step.json" ;;
    train-2ranks)
      train_config train-2ranks
      measure train-2ranks env M2SA_NUM_THREADS=1 "$M2SA" train --config "$RESULTS/train-2ranks.json" --nproc 2 ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
