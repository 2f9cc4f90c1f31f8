#pragma once
// The M2SA training objective on a teacher-forced forward (../shared/spec/M2SA.md section 4.1):
//   loss = ce_loss_weight * CE + bce_loss_weight * BCE + dice_loss_weight * DICE
// CE is HF's shifted next-token cross-entropy, mean over every supervised token of the micro-batch, computed from
// the logits the model evaluates only at supervised positions (M2SAForCausalLM::forward's lm_logits / lm_targets;
// identical to lm_cross_entropy on full logits). BCE and DICE are the per-mask means of train/losses.h over every
// mask of the micro-batch at the original image resolution.
//
// Weights: LossWeights defaults are the paper's (CE 1.0, BCE 0.5, DICE 2.0; M2SA Eq. 1). The reference code trains
// with CE 1.0, BCE 2.0, DICE 0.5 (MMR:train_ds.py:84-86, inherited from LISA): set
// {"ce_loss_weight": 1.0, "bce_loss_weight": 2.0, "dice_loss_weight": 0.5} to reproduce the released training.
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <vector>

#include "m2sa/models/m2sa/m2sa_model.h"
#include "m2sa/train/losses.h"
#include "m2sa/train/trainer.h"

namespace m2sa::train {

// Unweighted CE from the supervised logits (0, still attached to the graph, when nothing is supervised).
at::Tensor supervised_cross_entropy(const m2sa_model::ForwardOutput& out);

// The full objective. gt_masks[i]: image i's masks [n_i, H_i, W_i] (any device; moved to the predictions').
// Errors when an image's predicted mask count differs from its ground truth (the reference's assertion).
LossParts m2sa_objective(const m2sa_model::ForwardOutput& out, const std::vector<at::Tensor>& gt_masks,
                         const LossWeights& weights);

// The trainer's view: loss plus the logged parts ce, mask_bce, mask_dice, mask.
ForwardResult to_forward_result(const LossParts& parts);

// What `m2sa train` computes for one micro-batch (M2SATask::forward in m2sa_training.cpp): the model inputs moved to
// `device`, the teacher-forced forward with labels, then m2sa_objective against gt_masks (per image, in [SEG] order;
// data::M2SATrainBatch holds both). The forward output is returned too ([SEG] prompts, low-res and full-size
// masks), for tests and diagnostics.
struct MicroBatchResult {
  m2sa_model::ForwardOutput output;
  LossParts losses;
};
MicroBatchResult micro_batch_objective(const m2sa_model::M2SAForCausalLMImpl& model, const m2sa_model::M2SABatch& inputs,
                                       const std::vector<at::Tensor>& gt_masks, const LossWeights& weights,
                                       const c10::Device& device);

}  // namespace m2sa::train
