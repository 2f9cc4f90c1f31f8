#include "m2sa/eval/seg_meter.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "m2sa/core/error.h"
#include "m2sa/eval/hungarian.h"
#include "m2sa/eval/iou.h"

namespace m2sa::eval {

const char* to_string(EvalMode mode) { return mode == EvalMode::kGenerate ? "generate" : "teacher-forced"; }

EvalMode parse_eval_mode(const std::string& s) {
  if (s == "teacher-forced") return EvalMode::kTeacherForced;
  if (s == "generate") return EvalMode::kGenerate;
  fail("evaluation mode: expected \"teacher-forced\" or \"generate\", got \"", s, "\"");
}

const char* to_string(SegCount count) {
  switch (count) {
    case SegCount::kExact: return "exact";
    case SegCount::kTooFew: return "too_few";
    case SegCount::kTooMany: return "too_many";
  }
  return "?";
}

SegCount ImageScore::count() const {
  if (num_pred < num_gt) return SegCount::kTooFew;
  if (num_pred > num_gt) return SegCount::kTooMany;
  return SegCount::kExact;
}

namespace {

// Checks shapes (values are checked while counting) and returns Np. An undefined or empty ([0, ...])
// prediction tensor means "no prediction".
int64_t check_shapes(const at::Tensor& pred, const at::Tensor& gt, const at::Tensor& ignore) {
  M2SA_CHECK(gt.defined() && gt.dim() == 3, "GT masks: expected [Ng, H, W], got ",
             gt.defined() ? c10::str(gt.sizes()) : std::string("undefined"));
  if (ignore.defined()) {
    const bool shared = ignore.dim() == 2 && ignore.size(0) == gt.size(1) && ignore.size(1) == gt.size(2);
    M2SA_CHECK(shared || (ignore.dim() == 3 && ignore.sizes() == gt.sizes()),
               "ignore map: expected [H, W] or [Ng, H, W] matching GT masks ", gt.sizes(), ", got ", ignore.sizes());
  }
  if (!pred.defined() || (pred.dim() >= 1 && pred.size(0) == 0)) return 0;
  M2SA_CHECK(pred.dim() == 3 && pred.size(1) == gt.size(1) && pred.size(2) == gt.size(2),
             "predicted masks: expected [Np, ", gt.size(1), ", ", gt.size(2), "] to match GT masks ", gt.sizes(),
             ", got ", pred.sizes());
  return pred.size(0);
}

}  // namespace

ImageScore score_teacher_forced(const at::Tensor& pred, const at::Tensor& gt, const at::Tensor& ignore) {
  const int64_t np = check_shapes(pred, gt, ignore);
  ImageScore s;
  s.mode = EvalMode::kTeacherForced;
  s.num_gt = gt.size(0);
  s.num_pred = np;
  if (np == 0) {  // MMR:train_ds.py:576-577 `if len(output_list) == 0: continue`
    s.skipped = true;
    return s;
  }
  const int64_t k = std::min(s.num_gt, np);  // zip(masks_list, output_list)
  std::vector<IouAreas> areas;
  if (k > 0) {
    const at::Tensor ign = ignore.defined() && ignore.dim() == 3 ? ignore.narrow(0, 0, k) : ignore;
    areas = intersection_and_union_batch(pred.narrow(0, 0, k), gt.narrow(0, 0, k), ign, "teacher-forced masks");
  }
  s.masks.resize(static_cast<size_t>(s.num_gt));
  for (int64_t i = 0; i < k; ++i) {
    MaskScore& m = s.masks[static_cast<size_t>(i)];
    m.pred_index = i;
    m.intersection = areas[static_cast<size_t>(i)].intersection[1];
    m.union_ = areas[static_cast<size_t>(i)].union_[1];
    m.iou = mask_iou(m.intersection, m.union_);
  }
  for (int64_t j = k; j < np; ++j) s.extra_predictions.push_back(j);
  return s;
}

ImageScore score_generate(const at::Tensor& pred, const at::Tensor& gt, const at::Tensor& ignore) {
  const int64_t np = check_shapes(pred, gt, ignore);
  ImageScore s;
  s.mode = EvalMode::kGenerate;
  s.num_gt = gt.size(0);
  s.num_pred = np;
  const int64_t ng = s.num_gt;
  s.masks.resize(static_cast<size_t>(ng));
  // Unmatched GT masks: I = 0, U = GT foreground area (ignored pixels are 255, not counted).
  if (ng > 0) {
    const std::vector<int64_t> area_gt = gt_foreground_areas(gt, ignore, "GT masks");
    for (int64_t i = 0; i < ng; ++i) s.masks[static_cast<size_t>(i)].union_ = area_gt[static_cast<size_t>(i)];
  }
  std::vector<char> used(static_cast<size_t>(np), 0);
  if (ng > 0 && np > 0) {
    auto [inter, uni] = pairwise_intersection_union(pred, gt, ignore, "generated masks");  // int64 [Ng, Np]
    const int64_t* ip = inter.data_ptr<int64_t>();
    const int64_t* up = uni.data_ptr<int64_t>();
    std::vector<double> iou(static_cast<size_t>(ng * np));
    for (int64_t e = 0; e < ng * np; ++e) iou[static_cast<size_t>(e)] = mask_iou(ip[e], up[e]);
    const std::vector<int64_t> col = max_score_assignment(iou, ng, np);
    for (int64_t i = 0; i < ng; ++i) {
      const int64_t j = col[static_cast<size_t>(i)];
      // An assignment of IoU 0 matches nothing: which non-overlapping prediction the solver picks is a tie, and
      // its area must not reach the cIoU union. The GT mask stays unmatched (union = its area).
      if (j < 0 || !(iou[static_cast<size_t>(i * np + j)] > 0.0)) continue;
      MaskScore& m = s.masks[static_cast<size_t>(i)];
      m.pred_index = j;
      m.intersection = ip[i * np + j];
      m.union_ = up[i * np + j];
      m.iou = iou[static_cast<size_t>(i * np + j)];
      used[static_cast<size_t>(j)] = 1;
    }
  }
  for (int64_t j = 0; j < np; ++j)
    if (!used[static_cast<size_t>(j)]) s.extra_predictions.push_back(j);
  return s;
}

ImageScore SegMeter::add(const at::Tensor& pred_masks, const at::Tensor& gt_masks, const at::Tensor& ignore,
                         const std::vector<Target>& targets) {
  check_shapes(pred_masks, gt_masks, ignore);
  M2SA_CHECK(targets.empty() || static_cast<int64_t>(targets.size()) == gt_masks.size(0), "targets: got ",
             targets.size(), " targets for ", gt_masks.size(0), " GT masks (expected one per mask, or none)");
  ImageScore score = mode_ == EvalMode::kGenerate ? score_generate(pred_masks, gt_masks, ignore)
                                                  : score_teacher_forced(pred_masks, gt_masks, ignore);
  add_score(score, targets);
  return score;
}

void SegMeter::add_score(const ImageScore& score, const std::vector<Target>& targets) {
  M2SA_CHECK(score.mode == mode_, "SegMeter: a ", to_string(score.mode), " score cannot be added to a ",
             to_string(mode_), " meter");
  M2SA_CHECK(score.skipped || static_cast<int64_t>(score.masks.size()) == score.num_gt,
             "SegMeter: image score has ", score.masks.size(), " mask scores for ", score.num_gt, " GT masks");
  M2SA_CHECK(targets.empty() || static_cast<int64_t>(targets.size()) == score.num_gt, "targets: got ",
             targets.size(), " targets for ", score.num_gt, " GT masks (expected one per mask, or none)");
  MetricSums& m = sums_;
  m[MetricSums::kImagesSeen] += 1;
  m[MetricSums::kPredictions] += static_cast<double>(score.num_pred);
  switch (score.count()) {
    case SegCount::kExact: m[MetricSums::kCountExact] += 1; break;
    case SegCount::kTooFew: m[MetricSums::kCountTooFew] += 1; break;
    case SegCount::kTooMany: m[MetricSums::kCountTooMany] += 1; break;
  }
  if (score.skipped) {
    m[MetricSums::kImagesSkipped] += 1;
    m[MetricSums::kMasksSkipped] += static_cast<double>(score.num_gt);
    return;
  }
  if (score.num_gt == 0) {
    m[MetricSums::kImagesWithoutGt] += 1;
    m[MetricSums::kExtra] += static_cast<double>(score.num_pred);
    return;
  }
  m[MetricSums::kImagesScored] += 1;
  m[MetricSums::kMasks] += static_cast<double>(score.num_gt);
  m[MetricSums::kExtra] += static_cast<double>(score.extra_predictions.size());
  for (size_t i = 0; i < score.masks.size(); ++i) {
    const MaskScore& ms = score.masks[i];
    m[MetricSums::kIouSum] += ms.iou;
    m[MetricSums::kIntersection] += static_cast<double>(ms.intersection);
    m[MetricSums::kUnion] += static_cast<double>(ms.union_);
    m[ms.pred_index >= 0 ? MetricSums::kMatched : MetricSums::kMissing] += 1;
    if (!targets.empty()) categories_.add(targets[i], ms.iou, ms.intersection, ms.union_);
  }
}

void SegMeter::merge(const SegMeter& other) {
  M2SA_CHECK(other.mode_ == mode_, "SegMeter: cannot merge a ", to_string(other.mode_), " meter into a ",
             to_string(mode_), " meter");
  sums_.merge(other.sums_);
  categories_.merge(other.categories_);
}

json SegMeter::state_to_json() const {
  return {{"mode", to_string(mode_)}, {"sums", sums_.to_json()}, {"categories", categories_.to_json()}};
}

SegMeter SegMeter::state_from_json(const json& j, const std::string& where) {
  JsonReader r(j, where);
  SegMeter meter(with_context(r.location("mode"), [&] { return parse_eval_mode(r.get<std::string>("mode")); }));
  meter.sums_ = MetricSums::from_json(r.raw("sums"), where + ": sums");
  meter.categories_ = CategoryStats::from_json(r.raw("categories"), where + ": categories");
  r.finish();
  return meter;
}

}  // namespace m2sa::eval
