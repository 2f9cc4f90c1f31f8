#include "m2sa/models/sam/postprocess.h"

#include <ATen/ATen.h>

#include "m2sa/core/error.h"

namespace m2sa::sam {

at::Tensor postprocess_masks(const at::Tensor& low_res, int64_t img_size, std::pair<int64_t, int64_t> input_size,
                             std::pair<int64_t, int64_t> original_size) {
  const auto [in_h, in_w] = input_size;
  const auto [orig_h, orig_w] = original_size;
  M2SA_CHECK(low_res.defined() && low_res.dim() == 4 && low_res.is_floating_point(),
             "SAM postprocess_masks: expected low-res mask logits [N, k, h, w], got ",
             low_res.defined() ? low_res.sizes() : at::IntArrayRef{});
  M2SA_CHECK(img_size > 0, "SAM postprocess_masks: img_size must be positive, got ", img_size);
  M2SA_CHECK(in_h > 0 && in_w > 0 && in_h <= img_size && in_w <= img_size, "SAM postprocess_masks: input size (", in_h,
             ", ", in_w, ") must lie inside the ", img_size, "x", img_size, " padded input");
  M2SA_CHECK(orig_h > 0 && orig_w > 0, "SAM postprocess_masks: original size (", orig_h, ", ", orig_w,
             ") must be positive");
  // LISA keeps fp32 (the cast back to the input dtype is commented out in the reference).
  at::Tensor masks = at::upsample_bilinear2d(low_res.to(at::kFloat), {img_size, img_size}, /*align_corners=*/false);
  masks = masks.slice(2, 0, in_h).slice(3, 0, in_w);
  return at::upsample_bilinear2d(masks, {orig_h, orig_w}, /*align_corners=*/false);  // [N, k, H, W]
}

}  // namespace m2sa::sam
