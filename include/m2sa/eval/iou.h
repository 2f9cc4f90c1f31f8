#pragma once
// Mask intersection / union exactly as the reference scores them: `intersectionAndUnionGPU(pred, gt, K=2,
// ignore_index=255)` (MMR:utils/utils.py:192-204) and the per-mask IoU rule of `validate()`
// (MMR:train_ds.py:580-585), ../shared/spec/M2SA.md section 5.1.
//
// The reference sets pred := 255 wherever gt == 255 and takes histograms over the classes {0, 1}; values outside
// [0, 1] fall out of the histogram. For a binary prediction that means, per class c in {0, 1}:
//   intersection[c] = #{pred == c and gt == c}
//   area_pred[c]    = #{pred == c and gt != 255}
//   area_gt[c]      = #{gt == c}
//   union[c]        = area_pred[c] + area_gt[c] - intersection[c]
// We use class 1 (foreground) everywhere; class 0 is kept for fidelity. Counts are exact int64.
//
// Masks may live on any device; they are counted on the CPU in one pass per (prediction, GT) pair (a few ms per
// megapixel), parallel over pairs with ATen's intra-op threads.
//
// Common arguments:
//   pred   bool or integer, values {0, 1} (threshold logits first: `logits > 0`, see threshold_logits)
//   gt     integer, values {0, 1, 255}; 255 = ignored pixel
//   ignore optional bool/integer [H, W] (shared by all GT masks) or [Ng, H, W]; nonzero pixels are treated
//          exactly like gt == 255 (m2sa::Sample::ignore)
// Bad dtypes, shapes or values are m2sa::Error naming `what`.
#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <utility>
#include <vector>

namespace m2sa::eval {

// Areas for the classes {0, 1} (index = class).
struct IouAreas {
  std::array<int64_t, 2> intersection{0, 0};
  std::array<int64_t, 2> union_{0, 0};
  std::array<int64_t, 2> area_gt{0, 0};  // the reference's third return value (area_target)
};

// The reference's epsilon in `acc_iou += I / (U + 1e-5)`.
constexpr double kMaskIouEps = 1e-5;

// Per-mask IoU of the reference: I / (U + 1e-5), plus 1.0 when U == 0 (empty GT and empty prediction, after
// removing ignored pixels, count as a perfect match). I, U are class-1 areas.
double mask_iou(int64_t intersection, int64_t union_);

// One pair: pred [H, W], gt [H, W].
IouAreas intersection_and_union(const at::Tensor& pred, const at::Tensor& gt, const char* what = "mask");

// Pairs k = 0..K-1: pred [K, H, W], gt [K, H, W] -> one IouAreas per pair.
std::vector<IouAreas> intersection_and_union_batch(const at::Tensor& pred, const at::Tensor& gt,
                                                   const at::Tensor& ignore = {}, const char* what = "masks");

// Class-1 areas of every (GT i, prediction j) pair: pred [Np, H, W], gt [Ng, H, W]; GT i's ignored pixels are
// removed from every prediction scored against it. Returns {intersection, union}, each int64 [Ng, Np] (CPU).
std::pair<at::Tensor, at::Tensor> pairwise_intersection_union(const at::Tensor& pred, const at::Tensor& gt,
                                                             const at::Tensor& ignore = {},
                                                             const char* what = "masks");

// Foreground area of each GT mask, #{gt == 1 and not ignored}: gt [Ng, H, W] -> Ng counts.
std::vector<int64_t> gt_foreground_areas(const at::Tensor& gt, const at::Tensor& ignore = {},
                                         const char* what = "GT masks");

// `logits > 0` (the reference's threshold, sigmoid 0.5) as bool.
at::Tensor threshold_logits(const at::Tensor& logits);

}  // namespace m2sa::eval
