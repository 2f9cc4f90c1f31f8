#include "m2sa/nn/attention.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "m2sa/core/error.h"

namespace m2sa::nn {

namespace {

thread_local AttentionMode current_mode = AttentionMode::kSdpa;

at::Tensor causal_keep_mask(int64_t tq, int64_t tk, const at::Device& device) {
  // keep[i, j] = j <= (tk - tq) + i
  at::Tensor i = at::arange(tq, at::TensorOptions().dtype(at::kLong).device(device)).unsqueeze(1);
  at::Tensor j = at::arange(tk, at::TensorOptions().dtype(at::kLong).device(device)).unsqueeze(0);
  return j <= (i + (tk - tq));
}

at::Tensor exact_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const AttentionOptions& o,
                           double scale) {
  at::Tensor scores = at::matmul(q, k.transpose(-2, -1)) * scale;
  if (o.softmax_fp32) scores = scores.to(at::kFloat);
  if (o.mask.defined()) {
    if (o.mask.scalar_type() == at::kBool)
      scores = scores.masked_fill(o.mask.logical_not(), -std::numeric_limits<float>::infinity());
    else
      scores = scores + o.mask.to(scores.scalar_type());
  }
  if (o.causal) {
    scores = scores.masked_fill(causal_keep_mask(q.size(-2), k.size(-2), q.device()).logical_not(),
                                -std::numeric_limits<float>::infinity());
  }
  at::Tensor probs = at::softmax(scores, -1).to(v.scalar_type());
  return at::matmul(probs, v);
}

at::Tensor sdpa_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const AttentionOptions& o,
                          double scale) {
  // The fused op aligns a causal mask to the *start* of the keys and refuses a mask together with is_causal, so
  // cached decoding (Tq < Tk) and masked causal calls pass one explicit mask instead.
  at::Tensor mask = o.mask;
  bool causal = o.causal;
  if (causal && (mask.defined() || q.size(-2) != k.size(-2))) {
    at::Tensor keep = causal_keep_mask(q.size(-2), k.size(-2), q.device());
    if (!mask.defined()) mask = keep;
    else if (mask.scalar_type() == at::kBool) mask = mask.logical_and(keep);
    else mask = mask.masked_fill(keep.logical_not(), -std::numeric_limits<float>::infinity());
    causal = false;
  }
  if (mask.defined() && mask.scalar_type() != at::kBool) mask = mask.to(q.scalar_type());
  return at::scaled_dot_product_attention(q, k, v, mask.defined() ? std::optional<at::Tensor>(mask) : std::nullopt,
                                          0.0, causal, scale);
}

}  // namespace

AttentionMode parse_attention_mode(const std::string& name, const std::string& where) {
  if (name == "sdpa") return AttentionMode::kSdpa;
  if (name == "exact") return AttentionMode::kExact;
  fail(where, ": attention mode must be \"sdpa\" or \"exact\", got \"", name, "\"");
}

std::string to_string(AttentionMode mode) { return mode == AttentionMode::kExact ? "exact" : "sdpa"; }

AttentionMode attention_mode() { return current_mode; }

AttentionModeGuard::AttentionModeGuard(AttentionMode mode) : previous_(current_mode) { current_mode = mode; }
AttentionModeGuard::~AttentionModeGuard() { current_mode = previous_; }

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const AttentionOptions& o) {
  M2SA_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "attention: expected 4-D q/k/v [B, heads, T, D], got ",
             q.sizes(), " ", k.sizes(), " ", v.sizes());
  M2SA_CHECK(q.size(-1) == k.size(-1) && k.size(-2) == v.size(-2), "attention: q/k/v shapes disagree: ", q.sizes(),
             " ", k.sizes(), " ", v.sizes());
  const double scale = o.scale.value_or(1.0 / std::sqrt(static_cast<double>(q.size(-1))));
  return current_mode == AttentionMode::kExact ? exact_attention(q, k, v, o, scale) : sdpa_attention(q, k, v, o, scale);
}

}  // namespace m2sa::nn
