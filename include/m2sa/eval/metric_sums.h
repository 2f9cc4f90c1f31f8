#pragma once
// The raw sums behind gIoU / cIoU, as a small fixed vector of doubles, so that a distributed evaluator can
// all-reduce them (SUM) and get exact totals. Every field is a sum of per-image contributions: merging two
// accumulators is element-wise addition. Counts and pixel areas are integers and stay exact in a double up to
// 2^53 (9e15 pixels); the IoU sum is a sum of doubles.
//
// Final metrics, as the reference computes them after `AverageMeter.all_reduce()` (MMR:utils/utils.py:150-173,
// MMR:train_ds.py:596-600; ../shared/spec/M2SA.md section 5.1):
//   gIoU = iou_sum / (masks + 1e-5)           (the all-reduced meter's `avg = sum / (count + 1e-5)`)
//   cIoU = intersection / (union + 1e-10)     (`iou_class = intersection_meter.sum / (union_meter.sum + 1e-10)`)
// Difference from the reference, on purpose: it accumulates in float32 on the GPU (per-mask IoU, per-image sums,
// the meters and the all-reduce tensor are float32), so its published values can differ from ours in the 6th-7th
// significant digit (cIoU pixel sums above 2^24 are rounded there). We accumulate exactly.
#include <array>
#include <cstddef>
#include <string>
#include <vector>

#include "m2sa/core/json_reader.h"

namespace m2sa::eval {

constexpr double kGiouCountEps = 1e-5;   // AverageMeter.all_reduce: avg = sum / (count + 1e-5)
constexpr double kCiouUnionEps = 1e-10;  // validate(): intersection / (union + 1e-10)

struct MetricSums {
  enum Field : size_t {
    kIouSum,           // sum of per-mask IoU (mask_iou) over scored GT masks; unmatched GT masks add 0
    kMasks,            // scored GT masks (the gIoU divisor; the reference's meter count)
    kIntersection,     // class-1 intersection summed over scored (GT, prediction) pairs
    kUnion,            // class-1 union summed likewise (generate mode: plus the area of unmatched GT masks)
    kImagesSeen,       // every image passed to the accumulator
    kImagesScored,     // images that contributed masks
    kImagesSkipped,    // teacher-forced: images with no prediction, skipped as the reference does
    kMasksSkipped,     // GT masks of the skipped images (not in kMasks)
    kImagesWithoutGt,  // images with no GT mask (nothing to score; their predictions are extra)
    kPredictions,      // predicted masks seen
    kMatched,          // GT masks scored against a prediction
    kMissing,          // GT masks of scored images without a prediction (IoU 0)
    kExtra,            // predictions not scored against any GT mask
    kCountExact,       // images whose prediction count equals the GT count ([SEG] count correct)
    kCountTooFew,      // images with fewer predictions than GT masks
    kCountTooMany,     // images with more predictions than GT masks
    kNumFields
  };
  static constexpr size_t kSize = kNumFields;

  std::array<double, kSize> values{};

  double& operator[](Field f) { return values[f]; }
  double operator[](Field f) const { return values[f]; }

  // The snake_case name of a field ("iou_sum", "masks", ...), used in JSON.
  static const char* name(size_t field);

  double giou() const;
  double ciou() const;

  void merge(const MetricSums& other);  // element-wise sum

  // For all-reduce: exactly kSize doubles in Field order, and back (size mismatch is m2sa::Error).
  std::vector<double> to_vector() const;
  static MetricSums from_vector(const std::vector<double>& v);

  json to_json() const;                                              // {"iou_sum": ..., ...}
  static MetricSums from_json(const json& j, const std::string& where);  // strict: every field, no others
};

}  // namespace m2sa::eval
