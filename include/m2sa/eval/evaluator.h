#pragma once
// Runs the model over an evaluation split and scores it (../shared/spec/M2SA.md section 5.1 and the Decisions
// table): `teacher-forced` feeds the ground-truth conversations (with their [SEG]s) as the reference's validate()
// does; `generate` answers each question with greedy decoding and matches the generated masks to the ground truth
// (Hungarian). Several images per forward; distributed over the ranks of a Communicator with exact totals (each
// real item is scored once: no sampler padding).
//
// teacher-forced: images_per_batch samples are collated for inference (collate_samples with training = false: the
//   validation prompts, no truncation) and run through one mask-only forward (no labels, no LM logits); image i's
//   prediction is `pred_masks[i] > 0` at the original size, scored with score_teacher_forced (an image without any
//   prediction is skipped, as the reference does).
// generate: the question of every conversation (its first user turn, "<image>\n" removed) becomes chat.py's prompt
//   (render_generation_prompt + tokenizer_image_token); the questions of images_per_batch images are decoded as one
//   batch (each image encoded once). The masks of one question are matched one-to-one to that question's GT masks
//   (score_generate per question, so a mask is never matched to another question's target); the per-question
//   scores of an image are joined into one generate-mode ImageScore (GT order, prediction indices counted over the
//   image's answers in question order). [SEG] count errors per question go to GenerationStats.
//
// Exact, world-size-independent totals: every rank sends the scores of its images (a few numbers per mask) to every
// rank, and each rank replays them into a fresh SegMeter in dataset order. The result is bitwise identical for 1
// or N ranks and for any batch size (the floating-point IoU sum is added in the same order), not just equal up to
// rounding as an all-reduce of per-rank partial sums would be. If any rank fails, every rank throws an error that
// names the failing rank and its message (instead of waiting on a collective).
#include <cstdint>
#include <functional>
#include <string>

#include "m2sa/core/json_reader.h"
#include "m2sa/data/dataset.h"
#include "m2sa/eval/seg_meter.h"
#include "m2sa/models/m2sa/m2sa_model.h"
#include "m2sa/text/tokenizer.h"
#include "m2sa/dist/communicator.h"

namespace m2sa::eval {

// Generate mode: per-question statistics of the generated answers (totals over all ranks).
struct GenerationStats {
  int64_t questions = 0;         // prompts generated
  int64_t seg_exact = 0;         // questions whose answer has as many [SEG] as the question has GT masks
  int64_t seg_too_few = 0;
  int64_t seg_too_many = 0;
  int64_t no_seg = 0;            // questions whose answer has no [SEG] at all (while GT masks exist)
  int64_t predicted_masks = 0;   // generated [SEG] tokens
  int64_t gt_masks = 0;
  int64_t generated_tokens = 0;  // output ids, EOS included
  int64_t finished_eos = 0;      // finish reasons
  int64_t finished_max_new_tokens = 0;
  int64_t finished_context_full = 0;

  void merge(const GenerationStats& other);
  json to_json() const;  // {"questions", "seg_count": {exact, too_few, too_many, no_seg}, ...}
};

struct EvaluateOptions {
  EvalMode mode = EvalMode::kTeacherForced;
  int64_t images_per_batch = 4;    // images per forward (teacher-forced) or per generation request
  int64_t max_new_tokens = 256;    // generate mode
  int64_t limit = -1;              // evaluate only the first `limit` items (-1: all)
  bool log_progress = true;        // progress lines on rank 0
  double progress_interval_s = 10.0;  // seconds between progress lines (the first and last are always printed)
  // Called on the rank that scored it, per image (for per-image logs / dumps); may be empty.
  std::function<void(const Sample&, const ImageScore&)> on_image;
  // Generate mode: called per question on the rank that generated it (question index within the sample).
  std::function<void(const Sample&, int64_t question, const m2sa_model::GenerationResult&)> on_answer;
  // Bad items (BadEntry from the dataset, an unreadable image, a sample that does not collate): without skip_bad
  // the evaluation fails with the item's message; with skip_bad the item is left out of the scores and recorded
  // in skip_report (if given; every rank receives the skips of all ranks, in dataset order).
  bool skip_bad = false;
  data::SkipReport* skip_report = nullptr;
  // Generate mode: where the [SEG] count statistics go (totals over all ranks); may be null.
  GenerationStats* generation_stats = nullptr;
};

// Scores this rank's shard of `dataset` and reduces the meters over `comm` (nullptr: single process).
// The returned meter holds the totals of all ranks (sums and per-category tables) on every rank.
// Runs without autograd; the model should be in eval() mode (no LoRA dropout).
SegMeter evaluate(const m2sa_model::M2SAForCausalLM& model, const Tokenizer& tokenizer,
                  const data::EvalDataset& dataset, const EvaluateOptions& options,
                  dist::Communicator* comm = nullptr);

// The teacher-forced forward of `--mode teacher-forced` (the reference's validate(), model_forward with
// inference=True): the batch's conversations with their [SEG]s, no labels (no LM logits), masks at the original size.
// Runs without autograd. The evaluator scores `pred_masks[i] > 0` of each image.
m2sa_model::ForwardOutput teacher_forced_forward(const m2sa_model::M2SAForCausalLMImpl& model,
                                                 const m2sa_model::M2SABatch& batch);

// The generation prompt the evaluator uses for a dataset question ("<image>\n" stripped from the user turn, then
// chat.py's rendering), as token ids with one -200.
std::vector<int64_t> generation_prompt_ids(const Tokenizer& tokenizer, const std::string& user_turn,
                                           const m2sa_model::M2SAConfig& config);

}  // namespace m2sa::eval
