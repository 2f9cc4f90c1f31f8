#pragma once
// Rotary position embeddings in Hugging Face's `rotate_half` convention (transformers 4.31
// LlamaRotaryEmbedding / apply_rotary_pos_emb): the two halves of each head, not adjacent pairs, form the
// rotated pairs. Meta's checkpoints use adjacent pairs; HF checkpoints carry a q/k row permutation that makes
// the two identical, so HF weights need this convention.
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>

namespace m2sa::nn {

// cos / sin tables [max_positions, head_dim] in fp32, computed as HF does: inv_freq[j] = 1 / theta^(2j / D)
// (fp32), freqs = outer(arange(max_positions), inv_freq), emb = cat(freqs, freqs).
struct RotaryTables {
  at::Tensor cos, sin;
};
RotaryTables rotary_tables(int64_t head_dim, int64_t max_positions, double theta, const c10::Device& device);

// cat(-x[..., D/2:], x[..., :D/2]).
at::Tensor rotate_half(const at::Tensor& x);

// x [B, heads, T, D]; cos / sin [B, 1, T, D] (or broadcastable), already in x's dtype: x cos + rotate_half(x) sin.
at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace m2sa::nn
