#pragma once
// SAM's random-Fourier positional encoding (segment_anything/modeling/prompt_encoder.py::PositionEmbeddingRandom):
// PE(c) = [sin(2 pi (2c - 1) G), cos(2 pi (2c - 1) G)] for coordinates c normalised to [0, 1] and a fixed Gaussian
// matrix G [2, F] that is a buffer, but in the state_dict (`positional_encoding_gaussian_matrix`).
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <utility>

namespace m2sa::sam {

class PositionEmbeddingRandomImpl : public torch::nn::Module {
 public:
  // F = num_pos_feats; the encoding has 2F channels. G ~ N(0, scale^2) (scale <= 0 means 1, as the reference).
  explicit PositionEmbeddingRandomImpl(int64_t num_pos_feats, double scale = 1.0);

  // Encoding of the centres of an h x w grid: [2F, h, w]. Computed in the buffer's dtype, as LISA does
  // (MMR:model/segment_anything/modeling/prompt_encoder.py:216-229), so a bf16 model gives LISA's bf16 PE.
  at::Tensor forward(std::pair<int64_t, int64_t> size) const;
  // coords [B, N, 2] as (x, y) pixels of an image of size (H, W) -> [B, N, 2F].
  at::Tensor forward_with_coords(const at::Tensor& coords, std::pair<int64_t, int64_t> image_size) const;
  // coords [..., 2] already normalised to [0, 1] -> [..., 2F].
  at::Tensor encode(const at::Tensor& coords) const;

  at::Tensor positional_encoding_gaussian_matrix;  // [2, F]
};
TORCH_MODULE(PositionEmbeddingRandom);

}  // namespace m2sa::sam
