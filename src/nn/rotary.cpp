#include "m2sa/nn/rotary.h"

#include <ATen/ATen.h>

#include "m2sa/core/error.h"

namespace m2sa::nn {

RotaryTables rotary_tables(int64_t head_dim, int64_t max_positions, double theta, const c10::Device& device) {
  M2SA_CHECK(head_dim > 0 && head_dim % 2 == 0, "rotary embeddings need an even head_dim, got ", head_dim);
  M2SA_CHECK(max_positions > 0, "rotary embeddings: max_positions must be positive, got ", max_positions);
  M2SA_CHECK(theta > 0.0, "rotary embeddings: theta must be positive, got ", theta);
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(device);
  // inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))
  at::Tensor inv_freq = 1.0 / at::pow(theta, at::arange(0, head_dim, 2, f32) / static_cast<double>(head_dim));
  at::Tensor t = at::arange(max_positions, f32);
  at::Tensor freqs = at::outer(t, inv_freq);        // [P, D/2]
  at::Tensor emb = at::cat({freqs, freqs}, -1);     // [P, D]
  return RotaryTables{emb.cos(), emb.sin()};
}

at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, x.size(-1) - half), x.narrow(-1, 0, half)}, -1);
}

at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  return x * cos + rotate_half(x) * sin;
}

}  // namespace m2sa::nn
