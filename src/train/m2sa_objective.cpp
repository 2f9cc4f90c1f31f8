#include "m2sa/train/m2sa_objective.h"

#include <ATen/ATen.h>

#include "m2sa/core/error.h"

namespace m2sa::train {

namespace {
// Page-locked host tensors (the training prefetcher pins batches on CUDA) are copied asynchronously; the copy is
// queued on the current stream, so every later use of the result is ordered after it, and the caching host
// allocator keeps the pinned source alive until the copy has run. Other tensors: the usual synchronous copy.
at::Tensor to_device(const at::Tensor& t, const c10::Device& device) {
  return t.to(device, t.scalar_type(), /*non_blocking=*/t.is_cpu() && !device.is_cpu() && t.is_pinned());
}
}  // namespace

at::Tensor supervised_cross_entropy(const m2sa_model::ForwardOutput& out) {
  M2SA_CHECK(out.lm_logits.defined() && out.lm_logits.dim() == 2 && out.lm_targets.defined() &&
                 out.lm_targets.dim() == 1 && out.lm_targets.size(0) == out.lm_logits.size(0),
             "M2SA objective: the forward output has no supervised logits (run the forward with labels)");
  if (out.lm_targets.numel() == 0) return out.lm_logits.sum() * 0;
  return at::cross_entropy_loss(out.lm_logits, out.lm_targets.to(out.lm_logits.device()), {}, at::Reduction::Mean,
                                m2sa_model::kIgnoreIndex);
}

LossParts m2sa_objective(const m2sa_model::ForwardOutput& out, const std::vector<at::Tensor>& gt_masks,
                         const LossWeights& weights) {
  M2SA_CHECK(out.pred_masks.size() == gt_masks.size(), "M2SA objective: ", out.pred_masks.size(),
             " images with predicted masks but ", gt_masks.size(), " with ground-truth masks");
  std::vector<at::Tensor> gt;
  for (std::size_t i = 0; i < gt_masks.size(); ++i) {
    const at::Tensor& p = out.pred_masks[i];
    M2SA_CHECK(gt_masks[i].defined() && gt_masks[i].dim() == 3 && gt_masks[i].size(0) == p.size(0), "M2SA objective: image ",
               i, " has ", p.size(0), " predicted masks ([SEG] tokens in its conversations) but ",
               gt_masks[i].defined() && gt_masks[i].dim() == 3 ? gt_masks[i].size(0) : -1, " ground-truth masks");
    gt.push_back(to_device(gt_masks[i], p.device()));
  }
  return m2sa_loss(supervised_cross_entropy(out), out.pred_masks, gt, weights);
}

MicroBatchResult micro_batch_objective(const m2sa_model::M2SAForCausalLMImpl& model, const m2sa_model::M2SABatch& inputs,
                                       const std::vector<at::Tensor>& gt_masks, const LossWeights& weights,
                                       const c10::Device& device) {
  m2sa_model::M2SABatch x = inputs;
  for (at::Tensor* t : {&x.images.sam_images, &x.images.clip_images, &x.input_ids, &x.attention_mask, &x.labels})
    if (t->defined()) *t = to_device(*t, device);
  MicroBatchResult r;
  r.output = model.forward(x);
  r.losses = m2sa_objective(r.output, gt_masks, weights);
  return r;
}

ForwardResult to_forward_result(const LossParts& parts) {
  ForwardResult r;
  r.loss = parts.loss;
  r.parts = {{"ce", parts.ce}, {"mask_bce", parts.mask_bce}, {"mask_dice", parts.mask_dice}, {"mask", parts.mask}};
  return r;
}

}  // namespace m2sa::train
