#include "m2sa/vision/sam_preprocess.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "m2sa/core/error.h"
#include "m2sa/vision/pil_resample.h"

namespace m2sa {

namespace {
void check_rgb(const at::Tensor& rgb, const char* what) {
  M2SA_CHECK(rgb.defined() && rgb.dim() == 3 && rgb.size(2) == 3 && rgb.scalar_type() == at::kByte, what,
             ": expected a uint8 RGB image [H, W, 3], got ", rgb.defined() ? rgb.scalar_type() : at::kByte, " ",
             rgb.defined() ? rgb.sizes() : at::IntArrayRef{});
  M2SA_CHECK(rgb.size(0) > 0 && rgb.size(1) > 0, what, ": image has no pixels (", rgb.sizes(), ")");
}
}  // namespace

std::array<int64_t, 2> resize_longest_side_shape(int64_t h, int64_t w, int64_t long_side) {
  M2SA_CHECK(h > 0 && w > 0 && long_side > 0, "ResizeLongestSide: sizes must be positive (", h, "x", w, " -> ",
             long_side, ")");
  const double scale = static_cast<double>(long_side) * 1.0 / static_cast<double>(std::max(h, w));
  const double newh = static_cast<double>(h) * scale, neww = static_cast<double>(w) * scale;
  return {static_cast<int64_t>(newh + 0.5), static_cast<int64_t>(neww + 0.5)};
}

at::Tensor resize_longest_side(const at::Tensor& rgb, int64_t long_side) {
  check_rgb(rgb, "ResizeLongestSide");
  const auto hw = resize_longest_side_shape(rgb.size(0), rgb.size(1), long_side);
  // torchvision returns the image untouched when the size is right; pil_resize copies in that case.
  return pil_resize(rgb, std::max<int64_t>(hw[0], 1), std::max<int64_t>(hw[1], 1), PilFilter::kBilinear);
}

at::Tensor normalise_and_pad(const at::Tensor& image, int64_t img_size) {
  M2SA_CHECK(image.defined() && (image.dim() == 3 || image.dim() == 4) && image.size(-3) == 3,
             "SAM preprocess: expected [3, h, w] or [B, 3, h, w], got ",
             image.defined() ? image.sizes() : at::IntArrayRef{});
  const int64_t h = image.size(-2), w = image.size(-1);
  M2SA_CHECK(h <= img_size && w <= img_size, "SAM preprocess: image ", h, "x", w, " is larger than the input size ",
             img_size);
  const auto opts = at::TensorOptions().dtype(at::kFloat).device(image.device());
  const at::Tensor mean = at::tensor(std::vector<float>(kSamPixelMean.begin(), kSamPixelMean.end()), opts).view({3, 1, 1});
  const at::Tensor stdv = at::tensor(std::vector<float>(kSamPixelStd.begin(), kSamPixelStd.end()), opts).view({3, 1, 1});
  const at::Tensor x = (image.to(at::kFloat) - mean) / stdv;  // float32, like the reference
  return at::constant_pad_nd(x, {0, img_size - w, 0, img_size - h}, 0.0);
}

SamInput sam_preprocess(const at::Tensor& rgb, int64_t img_size) {
  check_rgb(rgb, "SAM preprocess");
  SamInput out;
  out.original_hw = {rgb.size(0), rgb.size(1)};
  const at::Tensor resized = resize_longest_side(rgb, img_size);  // [h, w, 3] uint8
  out.resized_hw = {resized.size(0), resized.size(1)};
  out.image = normalise_and_pad(resized.permute({2, 0, 1}), img_size).contiguous();
  return out;
}

}  // namespace m2sa
