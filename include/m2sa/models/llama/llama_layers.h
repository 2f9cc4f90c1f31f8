#pragma once
// One LLaMA decoder layer as Hugging Face's LlamaDecoderLayer (transformers 4.31 modeling_llama.py), with its
// parameter names: self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj, input_layernorm,
// post_attention_layernorm (no biases).
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include "m2sa/models/llama/kv_cache.h"
#include "m2sa/models/llama/llama_config.h"
#include "m2sa/nn/fused_linears.h"
#include "m2sa/nn/layers.h"

#include <optional>

namespace m2sa::llama {

// What every layer of one forward call shares.
struct LayerStep {
  at::Tensor cos, sin;     // [B, 1, T, head_dim] rotary tables at each token's position, activations' dtype
  at::Tensor mask;         // bool keep-mask [B, 1, T, Tk]; undefined = `causal` decides
  bool causal = true;      // without a mask: causal, aligned to the end of the keys; false = every key is visible
  KVCache* cache = nullptr;  // keys/values of earlier steps; this step's are appended (mask covers Tk = cache view)
  bool fixed_shape = false;  // append at the device lengths and attend over the whole capacity (ForwardOptions)
};

// Causal multi-head attention with rotary embeddings (HF rotate_half convention) and an optional KV cache.
class LlamaAttentionImpl : public torch::nn::Module {
 public:
  LlamaAttentionImpl(const LlamaConfig& config, int64_t layer_index);
  at::Tensor forward(const at::Tensor& x, const LayerStep& step) const;  // [B, T, H] -> [B, T, H]
  // Inference: q/k/v as one matmul (nn/fused_linears.h). False (nothing changed) where they cannot be fused.
  bool fuse_projections();

  int64_t layer_index, num_heads, head_dim;
  nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};

 private:
  std::optional<nn::FusedLinears> qkv_;
};
TORCH_MODULE(LlamaAttention);

// SwiGLU: down_proj(silu(gate_proj(x)) * up_proj(x)).
class LlamaMlpImpl : public torch::nn::Module {
 public:
  explicit LlamaMlpImpl(const LlamaConfig& config);
  at::Tensor forward(const at::Tensor& x) const;
  // Inference: gate/up as one matmul. False (nothing changed) where they cannot be fused.
  bool fuse_projections();

  nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};

 private:
  std::optional<nn::FusedLinears> gate_up_;
};
TORCH_MODULE(LlamaMlp);

// h = x + self_attn(input_layernorm(x)); out = h + mlp(post_attention_layernorm(h)).
class LlamaDecoderLayerImpl : public torch::nn::Module {
 public:
  LlamaDecoderLayerImpl(const LlamaConfig& config, int64_t layer_index);
  at::Tensor forward(const at::Tensor& x, const LayerStep& step) const;  // [B, T, H] -> [B, T, H]

  LlamaAttention self_attn{nullptr};
  LlamaMlp mlp{nullptr};
  nn::RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(LlamaDecoderLayer);

}  // namespace m2sa::llama
