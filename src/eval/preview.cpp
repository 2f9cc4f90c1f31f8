#include "m2sa/eval/preview.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>

#include "m2sa/core/error.h"
#include "m2sa/data/collate.h"
#include "m2sa/eval/evaluator.h"
#include "m2sa/eval/iou.h"
#include "m2sa/eval/seg_meter.h"
#include "m2sa/vision/image_io.h"
#include "m2sa/vision/overlay.h"

namespace m2sa::eval {

namespace {

// uint8 [H, W, 3] scaled (bilinear) so that its longer side is at most max_side.
at::Tensor fit_preview(const at::Tensor& rgb, int64_t max_side) {
  const int64_t h = rgb.size(0), w = rgb.size(1), side = std::max(h, w);
  if (side <= max_side) return rgb;
  const int64_t nh = std::max<int64_t>(1, h * max_side / side), nw = std::max<int64_t>(1, w * max_side / side);
  at::Tensor x = rgb.permute({2, 0, 1}).unsqueeze(0).to(at::kFloat);
  x = at::upsample_bilinear2d(x, {nh, nw}, /*align_corners=*/false);
  return x.squeeze(0).permute({1, 2, 0}).round().clamp(0, 255).to(at::kByte).contiguous();
}

std::vector<std::string> phrases_of(const Sample& s, int64_t n) {
  std::vector<std::string> labels;
  for (int64_t k = 0; k < n; ++k)
    labels.push_back(k < static_cast<int64_t>(s.targets.size()) ? s.targets[static_cast<size_t>(k)].phrase : "");
  return labels;
}

}  // namespace

std::vector<Preview> render_previews(const m2sa_model::M2SAForCausalLM& model, const Tokenizer& tokenizer,
                                     const data::EvalDataset& dataset, int64_t count, int64_t max_side) {
  M2SA_CHECK(count >= 0 && max_side >= 16, "render_previews: count must be >= 0 and max_side >= 16, got ", count,
             " and ", max_side);
  at::NoGradGuard no_grad;
  const data::CollateConfig collate = data::CollateConfig::for_model(model->config(), /*training=*/false);
  std::vector<Preview> previews;
  for (int64_t index = 0; index < dataset.size() && static_cast<int64_t>(previews.size()) < count; ++index) {
    const Sample sample = dataset.get(index);
    if (sample.conversations.empty() || sample.conversations.front().empty()) continue;
    const std::string where = dataset.name() + " item " + std::to_string(index) + " (" + sample.source + ")";
    with_context("preview of " + where, [&] {
      const at::Tensor rgb = read_image_rgb(sample.image_path);
      const data::M2SATrainBatch batch = data::collate_samples({sample}, {rgb}, tokenizer, collate);
      const m2sa_model::ForwardOutput out = teacher_forced_forward(*model, batch.inputs);
      const at::Tensor pred = threshold_logits(out.pred_masks.at(0)).cpu();
      const at::Tensor gt = sample.masks.defined() ? sample.masks : at::zeros({0, rgb.size(0), rgb.size(1)}, at::kByte);
      const ImageScore score = score_teacher_forced(pred, gt, sample.ignore);

      const at::Tensor left = fit_preview(vision::overlay_masks(rgb, gt, phrases_of(sample, gt.size(0))), max_side);
      const at::Tensor right = fit_preview(vision::overlay_masks(rgb, pred, phrases_of(sample, pred.size(0))), max_side);
      const at::Tensor gap = at::full({left.size(0), 8, 3}, 255, at::kByte);
      Preview p;
      p.name = "item-" + std::to_string(index);
      p.image = at::cat({left, gap, right}, 1).contiguous();
      json ious = json::array();
      double iou_sum = 0;
      for (const MaskScore& m : score.masks) {
        ious.push_back(m.iou);
        iou_sum += m.iou;
      }
      json targets = json::array();
      for (const Target& t : sample.targets) targets.push_back(t.phrase);
      const Turn& turn = sample.conversations.front().front();
      p.info = {{"source", sample.source},
                {"question", turn.user},
                {"answer", turn.assistant},
                {"targets", targets},
                {"iou", ious},
                {"giou", score.masks.empty() ? json() : json(iou_sum / static_cast<double>(score.masks.size()))}};
      previews.push_back(std::move(p));
    });
  }
  return previews;
}

}  // namespace m2sa::eval
