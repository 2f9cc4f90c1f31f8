#pragma once
// Runs the model over an evaluation split and scores it (../shared/spec/M2SA.md section 5.1 and the Decisions
// table): `teacher-forced` feeds the ground-truth conversations (with their [SEG]s) as the reference's validate()
// does; `generate` answers each question with greedy decoding and matches the generated masks to the ground truth
// (Hungarian). Several images per forward; distributed over the ranks of a Communicator with exact totals (each
// real item is scored once: no sampler padding).
#include <cstdint>
#include <functional>
#include <string>

#include "m2sa/data/dataset.h"
#include "m2sa/eval/seg_meter.h"
#include "m2sa/models/m2sa/m2sa_model.h"
#include "m2sa/text/tokenizer.h"
#include "m2sa/train/communicator.h"

namespace m2sa::eval {

struct EvaluateOptions {
  EvalMode mode = EvalMode::kTeacherForced;
  int64_t images_per_batch = 4;    // images per forward (teacher-forced) or per generation request
  int64_t max_new_tokens = 256;    // generate mode
  int64_t limit = -1;              // evaluate only the first `limit` items (-1: all)
  bool log_progress = true;        // progress lines on rank 0
  // Called on the rank that scored it, per image (for per-image logs / dumps); may be empty.
  std::function<void(const Sample&, const ImageScore&)> on_image;
};

// Scores this rank's shard of `dataset` and reduces the meters over `comm` (nullptr: single process).
// The returned meter holds the totals of all ranks (sums and per-category tables) on every rank.
SegMeter evaluate(const m2sa_model::M2SAForCausalLM& model, const Tokenizer& tokenizer,
                  const data::EvalDataset& dataset, const EvaluateOptions& options,
                  train::Communicator* comm = nullptr);

}  // namespace m2sa::eval
