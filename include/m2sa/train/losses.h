#pragma once
// The M2SA training losses, with the reference's arithmetic (M2SA.md section 4.1, MMR:model/M2SA.py:13-56,
// 317-355) so that loss values and gradients match it operation for operation:
//   loss = ce_weight * CE + bce_weight * BCE + dice_weight * DICE
// CE is the shifted next-token cross-entropy of the LLM (HF LlamaForCausalLM, ignore index -100); BCE and DICE
// are per-mask means over every mask of the micro-batch at the original image resolution.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "m2sa/core/json_reader.h"

namespace m2sa::train {

// Per-mask sigmoid BCE: BCE-with-logits, mean over H*W for each mask, summed over masks, / (num_masks + 1e-8).
// logits, targets: [n, H, W] (targets in {0, 1}); returns a 0-d tensor.
at::Tensor sigmoid_ce_loss(const at::Tensor& logits, const at::Tensor& targets, double num_masks);

// Dice loss as the reference writes it: p = sigmoid(logits); per mask
//   1 - (2*sum(p/scale * t) + eps) / (sum(p/scale) + sum(t/scale) + eps)
// summed over masks, / (num_masks + 1e-8). scale = 1000 with eps = 1e-6 behaves like an unscaled Dice with
// eps = 1e-3. logits, targets: [n, H, W]; returns a 0-d tensor.
at::Tensor dice_loss(const at::Tensor& logits, const at::Tensor& targets, double num_masks, double scale = 1000.0,
                     double eps = 1e-6);

struct MaskLossResult {
  at::Tensor bce;      // weight * per-mask mean BCE over the micro-batch (0-d)
  at::Tensor dice;     // weight * per-mask mean Dice over the micro-batch (0-d)
  int64_t num_masks;   // masks in the micro-batch
};

// The micro-batch aggregation of MMR:model/M2SA.py:317-346: each image's per-mask-averaged loss is multiplied
// back by its mask count, summed over images, multiplied by the weight and divided by (total masks + 1e-8).
// Images with 0 masks contribute nothing; a micro-batch without masks gives 0 (still attached to the graph).
// pred_masks[i], gt_masks[i]: [n_i, H_i, W_i] logits / targets of image i (the sizes may differ per image).
MaskLossResult mask_losses(const std::vector<at::Tensor>& pred_masks, const std::vector<at::Tensor>& gt_masks,
                           double bce_weight = 1.0, double dice_weight = 1.0);

// The same with all masks of the micro-batch concatenated ([N, H, W], one resolution) and `offset` per-image
// boundaries ([B + 1] values, offset[0] = 0, offset[B] = N; image i owns masks offset[i] .. offset[i+1]-1).
MaskLossResult mask_losses(const at::Tensor& pred_masks, const at::Tensor& gt_masks,
                           const std::vector<int64_t>& offset, double bce_weight = 1.0, double dice_weight = 1.0);

// Shifted next-token cross-entropy as HF LlamaForCausalLM computes it: position t predicts labels[t+1];
// labels == ignore_index are not supervised; mean over every supervised token of the batch.
// logits [B, T, V] (any float dtype; computed in that dtype like the reference), labels [B, T] int64.
// Where the batch has no supervised token at all PyTorch returns NaN (0/0); this returns 0 instead (still
// attached to the graph, zero gradient), since a batch of pure prompts is not an error.
at::Tensor lm_cross_entropy(const at::Tensor& logits, const at::Tensor& labels, int64_t ignore_index = -100);

// Loss weights. Struct defaults: the paper's values (M2SA Eq. 1: CE 1.0, BCE 0.5, DICE 2.0). The reference code
// trains with bce 2.0 / dice 0.5 (MMR:train_ds.py:84-86, not overridden by its README command), and the released
// models come from the code, so configs/train/m2sa-{7b,13b}.json set those.
struct LossWeights {
  double ce_loss_weight = 1.0;
  double bce_loss_weight = 0.5;
  double dice_loss_weight = 2.0;

  static LossWeights from_json(const JsonReader& r);  // every field optional (defaults above); strict
  json to_json() const;
};

struct LossParts {
  at::Tensor loss;            // ce + mask
  at::Tensor ce;              // ce_weight * CE
  at::Tensor mask_bce;        // bce_weight * BCE
  at::Tensor mask_dice;       // dice_weight * DICE
  at::Tensor mask;            // mask_bce + mask_dice
  int64_t num_masks = 0;
};

// The full M2SA objective from the LM cross-entropy (unweighted, e.g. lm_cross_entropy()) and the masks.
LossParts m2sa_loss(const at::Tensor& ce, const std::vector<at::Tensor>& pred_masks,
                    const std::vector<at::Tensor>& gt_masks, const LossWeights& weights);

}  // namespace m2sa::train
