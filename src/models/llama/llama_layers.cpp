#include "m2sa/models/llama/llama_layers.h"

#include <ATen/ATen.h>

#include "m2sa/core/error.h"
#include "m2sa/nn/attention.h"
#include "m2sa/nn/init.h"
#include "m2sa/nn/rotary.h"

namespace m2sa::llama {

namespace {
// HF LlamaPreTrainedModel._init_weights: Linear weights N(0, initializer_range = 0.02), no biases here.
nn::Linear make_linear(int64_t in, int64_t out) {
  nn::Linear l(in, out, /*bias=*/false);
  nn::normal_(l->weight, 0.0, 0.02);
  return l;
}
}  // namespace

LlamaAttentionImpl::LlamaAttentionImpl(const LlamaConfig& c, int64_t index)
    : layer_index(index), num_heads(c.num_attention_heads), head_dim(c.head_dim()) {
  const int64_t h = c.hidden_size;
  q_proj = register_module("q_proj", make_linear(h, h));
  k_proj = register_module("k_proj", make_linear(h, h));
  v_proj = register_module("v_proj", make_linear(h, h));
  o_proj = register_module("o_proj", make_linear(h, h));
}

at::Tensor LlamaAttentionImpl::forward(const at::Tensor& x, const LayerStep& step) const {
  const int64_t b = x.size(0), t = x.size(1);
  auto heads = [&](const at::Tensor& y) { return y.reshape({b, t, num_heads, head_dim}).transpose(1, 2); };
  at::Tensor q, k, v;
  if (qkv_ && qkv_->valid()) {
    const std::vector<at::Tensor> qkv = qkv_->forward(x);
    q = qkv[0], k = qkv[1], v = qkv[2];
  } else {
    q = q_proj->forward(x), k = k_proj->forward(x), v = v_proj->forward(x);
  }
  q = nn::apply_rotary(heads(q), step.cos, step.sin);  // [B, heads, T, D]
  k = nn::apply_rotary(heads(k), step.cos, step.sin);
  v = heads(v);
  if (step.cache) {
    std::tie(k, v) = step.fixed_shape ? step.cache->append_at_device_lengths(layer_index, k, v)
                                      : step.cache->append(layer_index, k, v);  // [B, heads, Tk, D]
  }
  nn::AttentionOptions opt;
  opt.softmax_fp32 = true;  // HF: softmax(..., dtype=float32).to(q.dtype)
  if (step.mask.defined()) opt.mask = step.mask;
  else opt.causal = step.causal;
  at::Tensor out = nn::attention(q, k, v, opt);  // [B, heads, T, D]
  return o_proj->forward(out.transpose(1, 2).reshape({b, t, num_heads * head_dim}));
}

LlamaMlpImpl::LlamaMlpImpl(const LlamaConfig& c) {
  gate_proj = register_module("gate_proj", make_linear(c.hidden_size, c.intermediate_size));
  up_proj = register_module("up_proj", make_linear(c.hidden_size, c.intermediate_size));
  down_proj = register_module("down_proj", make_linear(c.intermediate_size, c.hidden_size));
}

bool LlamaAttentionImpl::fuse_projections() {
  qkv_ = nn::FusedLinears::fuse({q_proj, k_proj, v_proj});
  return qkv_.has_value();
}

at::Tensor LlamaMlpImpl::forward(const at::Tensor& x) const {
  if (gate_up_ && gate_up_->valid()) {
    const std::vector<at::Tensor> gu = gate_up_->forward(x);
    return down_proj->forward(at::silu(gu[0]) * gu[1]);
  }
  return down_proj->forward(at::silu(gate_proj->forward(x)) * up_proj->forward(x));
}

bool LlamaMlpImpl::fuse_projections() {
  gate_up_ = nn::FusedLinears::fuse({gate_proj, up_proj});
  return gate_up_.has_value();
}

LlamaDecoderLayerImpl::LlamaDecoderLayerImpl(const LlamaConfig& c, int64_t index) {
  self_attn = register_module("self_attn", LlamaAttention(c, index));
  mlp = register_module("mlp", LlamaMlp(c));
  input_layernorm = register_module("input_layernorm", nn::RMSNorm(c.hidden_size, c.rms_norm_eps));
  post_attention_layernorm = register_module("post_attention_layernorm", nn::RMSNorm(c.hidden_size, c.rms_norm_eps));
}

at::Tensor LlamaDecoderLayerImpl::forward(const at::Tensor& x, const LayerStep& step) const {
  at::Tensor h = x + self_attn->forward(input_layernorm->forward(x), step);
  return h + mlp->forward(post_attention_layernorm->forward(h));
}

}  // namespace m2sa::llama
