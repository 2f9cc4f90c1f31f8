#pragma once
// CLIP image preprocessing as LLaVA / LISA run it: transformers' slow CLIPImageProcessor with the
// openai/clip-vit-large-patch14 preprocessor config (../shared/spec/M2SA.md section 1.6; fixtures README):
// shortest side -> size (long side int(size * long / short), truncation), Pillow bicubic (a = -0.5,
// antialiased), center crop with floor offsets (transformers' center_crop, not torchvision's rounding),
// x = float32(uint8 * (1/255) in float64), then float32 (x - mean) / std.
#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>

namespace m2sa {

struct ClipPreprocessConfig {
  int64_t shortest_edge = 224;  // preprocessor_config.json "size" (shortest_edge)
  int64_t crop_size = 224;      // "crop_size"
  std::array<float, 3> image_mean = {0.48145466f, 0.4578275f, 0.40821073f};
  std::array<float, 3> image_std = {0.26862954f, 0.26130258f, 0.27577711f};
  double rescale_factor = 1.0 / 255.0;
};

// get_resize_output_image_size(default_to_square=False): (h, w) with the short side = shortest_edge.
std::array<int64_t, 2> clip_resize_shape(int64_t h, int64_t w, int64_t shortest_edge);

// uint8 [H, W, 3] -> uint8 [h', w', 3] (Pillow bicubic).
at::Tensor clip_resize(const at::Tensor& rgb, int64_t shortest_edge);

// transformers image_transforms.center_crop on uint8 [H, W, C]: top = (H - crop) // 2, left = (W - crop) // 2;
// an image smaller than the crop is zero-padded around (as transformers does).
at::Tensor clip_center_crop(const at::Tensor& image, int64_t crop_h, int64_t crop_w);

// uint8 [h, w, 3] -> float32 [3, h, w]: float32(u8 * rescale_factor (float64)), then (x - mean) / std in float32.
at::Tensor clip_rescale_normalize(const at::Tensor& rgb, const ClipPreprocessConfig& config = {});

// uint8 RGB [H, W, 3] -> float32 [3, crop, crop] pixel values.
at::Tensor clip_preprocess(const at::Tensor& rgb, const ClipPreprocessConfig& config = {});

}  // namespace m2sa
