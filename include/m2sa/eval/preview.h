#pragma once
// Pictures of fixed evaluation items, for people watching a run (TensorBoard images, `m2sa report`'s gallery):
// the ground truth and the teacher-forced prediction (the validation protocol, evaluator.h) drawn side by side with
// vision::overlay_masks, one colour per target in both halves.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "m2sa/core/json_reader.h"
#include "m2sa/data/dataset.h"
#include "m2sa/models/m2sa/m2sa_model.h"
#include "m2sa/text/tokenizer.h"

namespace m2sa::eval {

struct Preview {
  std::string name;  // "item-<dataset index>"
  at::Tensor image;  // uint8 [H, 2W + gap, 3]: GT | prediction, the longer side of each half at most max_side
  json info;         // {"source", "question", "answer" (the GT answer fed to the model), "targets", "iou", "giou"}
};

// The first `count` items of `dataset` that ask a question (in dataset order, so the same items at every
// validation). Runs without autograd; the model should be in eval() mode.
std::vector<Preview> render_previews(const m2sa_model::M2SAForCausalLM& model, const Tokenizer& tokenizer,
                                     const data::EvalDataset& dataset, int64_t count, int64_t max_side = 384);

}  // namespace m2sa::eval
