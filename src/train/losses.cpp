#include "m2sa/train/losses.h"

#include <ATen/ATen.h>

#include "m2sa/core/error.h"

namespace m2sa::train {

namespace {
void check_pair(const at::Tensor& pred, const at::Tensor& gt, const char* what, int64_t image) {
  M2SA_CHECK(pred.defined() && gt.defined(), what, ": image ", image, ": undefined mask tensor");
  M2SA_CHECK(pred.dim() == 3, what, ": image ", image, ": predicted masks must be [n, H, W], got ", pred.sizes());
  // MMR:model/M2SA.py:322 asserts that the prediction count equals the ground-truth count per image.
  M2SA_CHECK(pred.sizes() == gt.sizes(), what, ": image ", image, ": predicted masks ", pred.sizes(),
             " and ground-truth masks ", gt.sizes(), " differ (one prediction per [SEG] and per GT mask)");
}
}  // namespace

at::Tensor sigmoid_ce_loss(const at::Tensor& logits, const at::Tensor& targets, double num_masks) {
  // MMR:model/M2SA.py:39-55.
  at::Tensor loss = at::binary_cross_entropy_with_logits(logits, targets, {}, {}, at::Reduction::None);
  return loss.flatten(1, 2).mean(1).sum() / (num_masks + 1e-8);
}

at::Tensor dice_loss(const at::Tensor& logits, const at::Tensor& targets, double num_masks, double scale,
                     double eps) {
  // MMR:model/M2SA.py:13-36, same operation order.
  at::Tensor p = logits.sigmoid().flatten(1, 2);
  at::Tensor t = targets.flatten(1, 2);
  at::Tensor numerator = 2 * (p / scale * t).sum(-1);
  at::Tensor denominator = (p / scale).sum(-1) + (t / scale).sum(-1);
  at::Tensor loss = 1 - (numerator + eps) / (denominator + eps);
  return loss.sum() / (num_masks + 1e-8);
}

MaskLossResult mask_losses(const std::vector<at::Tensor>& pred_masks, const std::vector<at::Tensor>& gt_masks,
                           double bce_weight, double dice_weight) {
  M2SA_CHECK(pred_masks.size() == gt_masks.size(), "mask_losses: ", pred_masks.size(),
             " images with predicted masks but ", gt_masks.size(), " with ground-truth masks");
  M2SA_CHECK(!pred_masks.empty(), "mask_losses: the micro-batch has no image");
  at::Tensor bce, dice;
  int64_t num_masks = 0;
  for (size_t i = 0; i < pred_masks.size(); ++i) {
    check_pair(pred_masks[i], gt_masks[i], "mask_losses", static_cast<int64_t>(i));
    const int64_t n = gt_masks[i].size(0);
    const at::Tensor gt = gt_masks[i].to(pred_masks[i].scalar_type());
    at::Tensor b = sigmoid_ce_loss(pred_masks[i], gt, static_cast<double>(n)) * n;
    at::Tensor d = dice_loss(pred_masks[i], gt, static_cast<double>(n)) * n;
    // The reference starts from the Python int 0; 0 + x == x exactly, so the first term is taken as is.
    bce = bce.defined() ? bce + b : b;
    dice = dice.defined() ? dice + d : d;
    num_masks += n;
  }
  const double denom = static_cast<double>(num_masks) + 1e-8;
  return {bce_weight * bce / denom, dice_weight * dice / denom, num_masks};
}

MaskLossResult mask_losses(const at::Tensor& pred_masks, const at::Tensor& gt_masks,
                           const std::vector<int64_t>& offset, double bce_weight, double dice_weight) {
  M2SA_CHECK(pred_masks.dim() == 3 && gt_masks.dim() == 3, "mask_losses: masks must be [N, H, W], got ",
             pred_masks.sizes(), " and ", gt_masks.sizes());
  M2SA_CHECK(offset.size() >= 2 && offset.front() == 0 && offset.back() == pred_masks.size(0),
             "mask_losses: offset must start at 0 and end at the mask count ", pred_masks.size(0),
             " with at least one image");
  std::vector<at::Tensor> preds, gts;
  for (size_t i = 0; i + 1 < offset.size(); ++i) {
    M2SA_CHECK(offset[i] <= offset[i + 1], "mask_losses: offset is not non-decreasing at image ", i, " (",
               offset[i], " > ", offset[i + 1], ")");
    preds.push_back(pred_masks.slice(0, offset[i], offset[i + 1]));
    gts.push_back(gt_masks.slice(0, offset[i], offset[i + 1]));
  }
  return mask_losses(preds, gts, bce_weight, dice_weight);
}

at::Tensor lm_cross_entropy(const at::Tensor& logits, const at::Tensor& labels, int64_t ignore_index) {
  M2SA_CHECK(logits.dim() == 3, "lm_cross_entropy: logits must be [B, T, V], got ", logits.sizes());
  M2SA_CHECK(labels.dim() == 2 && labels.size(0) == logits.size(0) && labels.size(1) == logits.size(1),
             "lm_cross_entropy: labels ", labels.sizes(), " do not match logits ", logits.sizes());
  M2SA_CHECK(labels.scalar_type() == at::kLong, "lm_cross_entropy: labels must be int64, got ",
             labels.scalar_type());
  const int64_t vocab = logits.size(2);
  // HF LlamaForCausalLM.forward (transformers 4.31): shift so that tokens < n predict n.
  at::Tensor shift_logits = logits.slice(1, 0, logits.size(1) - 1).contiguous().view({-1, vocab});
  at::Tensor shift_labels = labels.slice(1, 1).contiguous().view({-1}).to(logits.device());
  const at::Tensor supervised = shift_labels != ignore_index;
  // One host sync per micro-batch: negligible next to an LLM forward, and it keeps PyTorch's exact mean.
  if (supervised.sum().item<int64_t>() == 0) return shift_logits.sum() * 0;
  const at::Tensor valid = shift_labels.masked_select(supervised);
  const int64_t lo = valid.min().item<int64_t>(), hi = valid.max().item<int64_t>();
  M2SA_CHECK(lo >= 0 && hi < vocab, "lm_cross_entropy: label ", lo < 0 ? lo : hi, " is outside [0, ", vocab,
             ") and is not the ignore index ", ignore_index);
  return at::cross_entropy_loss(shift_logits, shift_labels, {}, at::Reduction::Mean, ignore_index);
}

LossWeights LossWeights::from_json(const JsonReader& r) {
  LossWeights w;
  w.ce_loss_weight = r.get_or("ce_loss_weight", w.ce_loss_weight);
  w.bce_loss_weight = r.get_or("bce_loss_weight", w.bce_loss_weight);
  w.dice_loss_weight = r.get_or("dice_loss_weight", w.dice_loss_weight);
  r.finish();
  return w;
}

json LossWeights::to_json() const {
  return json{{"ce_loss_weight", ce_loss_weight},
              {"bce_loss_weight", bce_loss_weight},
              {"dice_loss_weight", dice_loss_weight}};
}

LossParts m2sa_loss(const at::Tensor& ce, const std::vector<at::Tensor>& pred_masks,
                    const std::vector<at::Tensor>& gt_masks, const LossWeights& weights) {
  LossParts out;
  out.ce = ce * weights.ce_loss_weight;
  MaskLossResult m = mask_losses(pred_masks, gt_masks, weights.bce_loss_weight, weights.dice_loss_weight);
  out.mask_bce = m.bce;
  out.mask_dice = m.dice;
  out.mask = m.bce + m.dice;
  out.loss = out.ce + out.mask;
  out.num_masks = m.num_masks;
  return out;
}

}  // namespace m2sa::train
