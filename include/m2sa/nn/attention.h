#pragma once
// The one place that computes softmax(q k^T * scale + bias) v. On LibTorch >= 2.1 it calls
// at::scaled_dot_product_attention (fused/flash kernels on CUDA); on 1.13 the equivalent manual path
// (TOOLCHAIN.md section 3: the public op does not exist there).
#include <ATen/core/Tensor.h>

#include <optional>

namespace m2sa::nn {

struct AttentionOptions {
  // Additive bias or boolean keep-mask broadcastable to [B, heads, Tq, Tk]; undefined = none.
  at::Tensor mask;
  // Causal masking with the queries aligned to the *end* of the keys (query i sees keys <= Tk - Tq + i), which
  // is what cached decoding needs.
  bool causal = false;
  // Default 1/sqrt(head_dim).
  std::optional<double> scale;
  // Softmax in fp32 even for bf16/fp16 inputs (HF LLaMA does this).
  bool softmax_fp32 = true;
};

// q [B, heads, Tq, D], k/v [B, heads, Tk, D] -> [B, heads, Tq, D].
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const AttentionOptions& options = {});

}  // namespace m2sa::nn
