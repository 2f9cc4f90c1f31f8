#pragma once
// gIoU / cIoU accumulation per image, in the two evaluation modes of m2sa (../shared/spec/M2SA.md section 5.1,
// traps 6 and 7, and the "Decisions" table):
//
// teacher-forced: the published protocol (MMR:train_ds.py:542-609). The GT conversation is fed with its [SEG]
//   tokens, so prediction k belongs to GT mask k. Per image:
//     * no prediction at all           -> the image is skipped (not scored; counted in images_skipped);
//     * zip(gt, pred) truncates to the shorter list; each pair adds mask_iou(I, U) to the IoU sum and I, U to
//       the cIoU sums;
//     * the divisor counts every GT mask, so a GT mask without a prediction scores IoU 0 in gIoU and adds
//       nothing to cIoU (the reference's `acc_iou / n_gt` with meter weight n_gt);
//     * predictions beyond the GT count are ignored (counted as extra).
// generate: real generation, so the predictions are in no particular order and their number can be wrong.
//   Predictions are matched one-to-one to GT masks by maximum total IoU (Hungarian, hungarian.h). Per image:
//     * every GT mask is scored (images are never skipped);
//     * a matched pair scores like teacher-forced (mask_iou, I and U);
//     * an unmatched GT mask scores IoU 0 and adds its area to the cIoU union (as if predicted empty);
//     * unmatched predictions are reported as extra and are not scored.
//   With the right count and predictions whose best matching is the GT order, the two modes give the same
//   numbers; they differ when predictions are missing (generate mode scores those GT masks and charges their
//   area to the cIoU union, teacher-forced skips a prediction-less image) or out of order.
//   A pair of IoU 0 is no match: that GT mask counts as unmatched and the prediction as extra, so cIoU does not
//   depend on which of several non-overlapping predictions the solver would pick.
// In both modes the [SEG] count is checked per image (exact / too few / too many).
//
// The accumulated sums are exact and mergeable across ranks (MetricSums::to_vector for an all-reduce, or
// state_to_json for a gather); callers pass only real samples (no DistributedSampler padding).
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "m2sa/core/json_reader.h"
#include "m2sa/data/sample.h"
#include "m2sa/eval/category_stats.h"
#include "m2sa/eval/metric_sums.h"

namespace m2sa::eval {

enum class EvalMode { kTeacherForced, kGenerate };

const char* to_string(EvalMode mode);            // "teacher-forced" / "generate"
EvalMode parse_eval_mode(const std::string& s);  // the inverse; anything else is m2sa::Error

enum class SegCount { kExact, kTooFew, kTooMany };
const char* to_string(SegCount count);  // "exact" / "too_few" / "too_many"

// The score of one GT mask.
struct MaskScore {
  int64_t pred_index = -1;  // prediction scored against this GT mask; -1: none (IoU 0)
  int64_t intersection = 0;  // class-1 areas of the scored pair (generate, unmatched: I = 0, U = GT area)
  int64_t union_ = 0;
  double iou = 0.0;  // mask_iou(I, U) for a scored pair, 0 without prediction
};

struct ImageScore {
  EvalMode mode = EvalMode::kTeacherForced;
  int64_t num_gt = 0;
  int64_t num_pred = 0;
  bool skipped = false;                    // teacher-forced with no prediction: not scored
  std::vector<MaskScore> masks;            // one per GT mask in GT order; empty when skipped
  std::vector<int64_t> extra_predictions;  // indices of predictions not scored against any GT mask
  SegCount count() const;
};

// Scores one image. pred: bool/integer {0, 1} [Np, H, W]; gt: integer {0, 1, 255} [Ng, H, W] (255 = ignored);
// ignore: optional bool/integer [H, W] or [Ng, H, W], nonzero pixels are treated as 255 in the GT.
// Np and Ng may be 0 (an empty tensor [0, H, W]). Any device (the masks stay where they are; only the areas
// come to the host).
ImageScore score_teacher_forced(const at::Tensor& pred, const at::Tensor& gt, const at::Tensor& ignore = {});
ImageScore score_generate(const at::Tensor& pred, const at::Tensor& gt, const at::Tensor& ignore = {});

class SegMeter {
 public:
  explicit SegMeter(EvalMode mode = EvalMode::kTeacherForced) : mode_(mode) {}

  // Scores one image in this meter's mode and accumulates it. targets: one per GT mask (for the per-category
  // tables) or empty. Returns the image's score (for per-image logs).
  ImageScore add(const at::Tensor& pred_masks, const at::Tensor& gt_masks, const at::Tensor& ignore = {},
                 const std::vector<Target>& targets = {});

  // Accumulates a score computed elsewhere (e.g. by score_generate on another thread).
  void add_score(const ImageScore& score, const std::vector<Target>& targets = {});

  // Adds another meter's totals (same mode, else m2sa::Error).
  void merge(const SegMeter& other);

  EvalMode mode() const { return mode_; }
  const MetricSums& sums() const { return sums_; }
  const CategoryStats& categories() const { return categories_; }
  double giou() const { return sums_.giou(); }
  double ciou() const { return sums_.ciou(); }

  // For a cross-rank all-reduce of the sums: replace them with the reduced vector.
  void set_sums(const MetricSums& sums) { sums_ = sums; }

  // The whole state (mode, sums, categories) for gathering across ranks or saving partial results.
  json state_to_json() const;
  static SegMeter state_from_json(const json& j, const std::string& where);

 private:
  EvalMode mode_;
  MetricSums sums_;
  CategoryStats categories_;
};

}  // namespace m2sa::eval
