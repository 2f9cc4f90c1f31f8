#include "m2sa/vision/clip_preprocess.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <vector>

#include "m2sa/core/error.h"
#include "m2sa/vision/pil_resample.h"

namespace m2sa {

namespace {
int64_t floordiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
}  // namespace

std::array<int64_t, 2> clip_resize_shape(int64_t h, int64_t w, int64_t shortest_edge) {
  M2SA_CHECK(h > 0 && w > 0 && shortest_edge > 0, "CLIP resize: sizes must be positive (", h, "x", w, " -> ",
             shortest_edge, ")");
  const int64_t short_side = std::min(h, w), long_side = std::max(h, w);
  // int(requested_new_short * long / short): Python true division in float64, then truncation.
  const int64_t new_long = static_cast<int64_t>(static_cast<double>(shortest_edge * long_side) /
                                                static_cast<double>(short_side));
  if (w <= h) return {new_long, shortest_edge};
  return {shortest_edge, new_long};
}

at::Tensor clip_resize(const at::Tensor& rgb, int64_t shortest_edge) {
  M2SA_CHECK(rgb.defined() && rgb.dim() == 3 && rgb.size(2) == 3 && rgb.scalar_type() == at::kByte,
             "CLIP preprocess: expected a uint8 RGB image [H, W, 3]");
  M2SA_CHECK(rgb.size(0) > 0 && rgb.size(1) > 0, "CLIP preprocess: image has no pixels (", rgb.sizes(), ")");
  const auto hw = clip_resize_shape(rgb.size(0), rgb.size(1), shortest_edge);
  return pil_resize(rgb, std::max<int64_t>(hw[0], 1), std::max<int64_t>(hw[1], 1), PilFilter::kBicubic);
}

at::Tensor clip_center_crop(const at::Tensor& image, int64_t crop_h, int64_t crop_w) {
  M2SA_CHECK(image.dim() == 3 && crop_h > 0 && crop_w > 0, "center crop: expected [H, W, C] and a positive crop");
  const int64_t h = image.size(0), w = image.size(1);
  int64_t top = floordiv(h - crop_h, 2), left = floordiv(w - crop_w, 2);
  if (top >= 0 && left >= 0 && top + crop_h <= h && left + crop_w <= w)
    return image.slice(0, top, top + crop_h).slice(1, left, left + crop_w).contiguous();
  // Smaller than the crop: pad with zeros, centred, then crop (transformers image_transforms.center_crop).
  const int64_t new_h = std::max(crop_h, h), new_w = std::max(crop_w, w);
  at::Tensor padded = at::zeros({new_h, new_w, image.size(2)}, image.options());
  const int64_t top_pad = (new_h - h) / 2, left_pad = (new_w - w) / 2;
  padded.slice(0, top_pad, top_pad + h).slice(1, left_pad, left_pad + w).copy_(image);
  top += top_pad;
  left += left_pad;
  return padded.slice(0, std::max<int64_t>(0, top), std::min(new_h, top + crop_h))
      .slice(1, std::max<int64_t>(0, left), std::min(new_w, left + crop_w))
      .contiguous();
}

at::Tensor clip_rescale_normalize(const at::Tensor& rgb, const ClipPreprocessConfig& config) {
  M2SA_CHECK(rgb.dim() == 3 && rgb.size(2) == 3 && rgb.scalar_type() == at::kByte,
             "CLIP normalise: expected uint8 [h, w, 3], got ", rgb.scalar_type(), " ", rgb.sizes());
  const at::Tensor x = (rgb.to(at::kDouble) * config.rescale_factor).to(at::kFloat).permute({2, 0, 1});
  const auto opts = at::TensorOptions().dtype(at::kFloat).device(rgb.device());
  const at::Tensor mean =
      at::tensor(std::vector<float>(config.image_mean.begin(), config.image_mean.end()), opts).view({3, 1, 1});
  const at::Tensor stdv =
      at::tensor(std::vector<float>(config.image_std.begin(), config.image_std.end()), opts).view({3, 1, 1});
  return ((x - mean) / stdv).contiguous();
}

at::Tensor clip_preprocess(const at::Tensor& rgb, const ClipPreprocessConfig& config) {
  const at::Tensor resized = clip_resize(rgb, config.shortest_edge);
  return clip_rescale_normalize(clip_center_crop(resized, config.crop_size, config.crop_size), config);
}

}  // namespace m2sa
