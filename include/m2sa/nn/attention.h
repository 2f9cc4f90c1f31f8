#pragma once
// The one place that computes softmax(q k^T * scale + bias) v, in one of two modes:
// - kSdpa (the default): at::scaled_dot_product_attention, which picks the flash / memory-efficient / cuDNN
//   kernels on CUDA and a fused kernel on the CPU. It computes softmax in its own accumulation type.
// - kExact: the reference arithmetic written out (matmul, softmax, matmul), honouring softmax_fp32 the way the
//   reference does (HF LLaMA: softmax in fp32; SAM and CLIP: in the input dtype). For bf16 parity runs.
// Both meet every reference fixture at its fp32 tolerance: the ctest entry ParityExactAttention runs each *Parity
// test again in exact mode ($M2SA_TEST_ATTENTION).
//
// The mode is per thread (like grad mode): AttentionModeGuard sets it for a scope. The M2SA model opens one with
// its config's `m2sa.attention` in every entry point, and gradient checkpointing replays a forward with the mode
// it first ran under.
#include <ATen/core/Tensor.h>

#include <optional>
#include <string>

namespace m2sa::nn {

enum class AttentionMode { kSdpa, kExact };

// "sdpa" | "exact"; anything else is an error naming `where`.
AttentionMode parse_attention_mode(const std::string& name, const std::string& where);
std::string to_string(AttentionMode mode);

// This thread's mode (kSdpa unless a guard says otherwise).
AttentionMode attention_mode();

class AttentionModeGuard {
 public:
  explicit AttentionModeGuard(AttentionMode mode);
  ~AttentionModeGuard();
  AttentionModeGuard(const AttentionModeGuard&) = delete;
  AttentionModeGuard& operator=(const AttentionModeGuard&) = delete;

 private:
  AttentionMode previous_;
};

struct AttentionOptions {
  // Additive bias or boolean keep-mask broadcastable to [B, heads, Tq, Tk]; undefined = none.
  at::Tensor mask;
  // Causal masking with the queries aligned to the *end* of the keys (query i sees keys <= Tk - Tq + i), which
  // is what cached decoding needs.
  bool causal = false;
  // Default 1/sqrt(head_dim).
  std::optional<double> scale;
  // Exact mode: softmax in fp32 even for bf16/fp16 inputs (HF LLaMA does this). SDPA ignores it.
  bool softmax_fp32 = true;
};

// q [B, heads, Tq, D], k/v [B, heads, Tk, D] -> [B, heads, Tq, D], in this thread's attention_mode().
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const AttentionOptions& options = {});

}  // namespace m2sa::nn
