#pragma once
// SAM image preprocessing as LISA / M2SA run it (MMR:utils/dataset.py:406-416, chat.py;
// MMR:model/segment_anything/utils/transforms.py; ../shared/spec/M2SA.md section 1.1):
// ResizeLongestSide(img_size) with Pillow-exact bilinear (torchvision resize of a PIL image), float32
// (x - mean) / std per channel, then zero padding at the bottom/right to img_size x img_size.
#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>

namespace m2sa {

inline constexpr std::array<float, 3> kSamPixelMean = {123.675f, 116.28f, 103.53f};
inline constexpr std::array<float, 3> kSamPixelStd = {58.395f, 57.12f, 57.375f};

struct SamInput {
  at::Tensor image;                      // float32 [3, S, S], normalised then zero-padded bottom/right
  std::array<int64_t, 2> resized_hw{};   // size after ResizeLongestSide (kept for mask post-processing)
  std::array<int64_t, 2> original_hw{};  // size of the decoded image
};

// ResizeLongestSide.get_preprocess_shape: scale = S / max(h, w); (int(h*scale + 0.5), int(w*scale + 0.5)).
std::array<int64_t, 2> resize_longest_side_shape(int64_t h, int64_t w, int64_t long_side);

// uint8 [H, W, 3] -> uint8 [newh, neww, 3] (Pillow bilinear, antialiased; a copy if the size is unchanged).
at::Tensor resize_longest_side(const at::Tensor& rgb, int64_t long_side);

// Sam.preprocess: float [3, h, w] or [B, 3, h, w] with values 0..255 (any real dtype, converted to float32)
// -> float32 [..., 3, S, S]: (x - mean) / std in float32, then zeros at the bottom/right (padding after
// normalisation, so the padding is 0, not -mean/std). h, w <= S.
at::Tensor normalise_and_pad(const at::Tensor& image, int64_t img_size);

// uint8 RGB [H, W, 3] -> the SAM encoder input (img_size 1024 for ViT-H; the config's image size).
SamInput sam_preprocess(const at::Tensor& rgb, int64_t img_size = 1024);

}  // namespace m2sa
