#!/usr/bin/env bash
# The m2sa demo, on a fresh Debian 12 machine (about 10-15 minutes on 2 cores):
#   1. installs the dependencies (scripts/setup-deps.sh) and builds the CLI (build/m2sa),
#   2. generates the synthetic MMR-format dataset (dataset-synth/),
#   3. trains the tiny M2SA from scratch on it on the CPU (configs/train/tiny-synth.json -> runs/tiny-synth/),
#   4. evaluates it on the synthetic val and test splits (teacher-forced, the published protocol; and generation),
#   5. runs `m2sa infer` on held-out synthetic test images and on a real photograph (assets/coffee.png).
# Every command it runs is printed before it runs. Re-running starts a fresh training run (runs/tiny-synth is
# replaced); the dataset is regenerated identically (seed 0).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
step() { printf '\n==== [%4ds] %s\n' $(( $(date +%s) - start )) "$*"; }
run() { printf '+ %s\n' "$*"; "$@"; }

step "1/7 dependencies (scripts/setup-deps.sh)"
run bash scripts/setup-deps.sh
step "1/7 build the CLI (build/m2sa)"
TARGETS=m2sa run bash scripts/build.sh
export GLIBC_TUNABLES=${GLIBC_TUNABLES:-glibc.malloc.hugetlb=1}

step "2/7 synthetic dataset (dataset-synth/)"
run build/m2sa synth --out dataset-synth --seed 0

step "3/7 train the tiny model from scratch (400 steps of 4 images; progress every 10 steps)"
rm -rf runs/tiny-synth
run build/m2sa train --config configs/train/tiny-synth.json

step "4/7 evaluate: teacher-forced (the published protocol) on val and the three test splits"
run build/m2sa eval --config configs/train/tiny-synth.json --split val,test/obj,test/part,test/mixed
step "4/7 evaluate: generation (the model writes its answers; Hungarian matching) on val"
run build/m2sa eval --config configs/train/tiny-synth.json --split val --mode generate

step "5/7 infer on held-out synthetic test images (dataset-synth/infer_examples.jsonl)"
run build/m2sa infer --model runs/tiny-synth/model --batch dataset-synth/infer_examples.jsonl \
  --out runs/tiny-synth/infer --precision fp32 --allow-no-seg

step "6/7 infer on a real photograph (assets/coffee.png)"
echo "The demo model has only ever seen synthetic scenes: its answer about a photograph says nothing about M2SA."
echo "This step shows the real-image path (decoding, preprocessing, generation, masks, overlay) end to end."
run build/m2sa infer --model runs/tiny-synth/model assets/coffee.png \
  "What part of this cup would I hold to lift it?" --out runs/tiny-synth/infer-photo --precision fp32 --allow-no-seg

step "7/7 report: one HTML page with the training curves, the evaluation tables and a gallery of masks"
evals=()
for f in runs/tiny-synth/model/eval/*.json; do evals+=(--eval "$f"); done
run build/m2sa report runs/tiny-synth "${evals[@]}" --infer runs/tiny-synth/infer --infer runs/tiny-synth/infer-photo

step "done in $(( $(date +%s) - start )) s"
cat <<EOF
Where things are:
  runs/tiny-synth/report.html          the run on one page: curves, config, eval tables, mask gallery (open it in a browser)
  runs/tiny-synth/metrics.jsonl        training loss, lr and validation per step (JSONL)
  runs/tiny-synth/tb/                  the same as TensorBoard event files, with validation previews:
                                       tensorboard --logdir runs/tiny-synth/tb
  runs/tiny-synth/checkpoints/         resumable checkpoints (latest, best.json)
  runs/tiny-synth/model/               the trained model in the merged Hugging Face layout
  runs/tiny-synth/model/eval/          evaluation reports (JSON), one per split and mode
  runs/tiny-synth/infer/<id>/          masks (PNG), overlay.png and result.json per synthetic test question
  runs/tiny-synth/infer-photo/         the same for the photograph
EOF
