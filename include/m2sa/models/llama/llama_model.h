#pragma once
// The LLaMA decoder as Hugging Face's LlamaForCausalLM (transformers 4.31), with its parameter names, so the
// LLaMA part of LLaVA / LISA / M2SA checkpoints loads by name:
//   model.embed_tokens.weight, model.layers.{i}.*, model.norm.weight, lm_head.weight
// (no rotary_emb.inv_freq buffer: the rotary tables are computed, not stored).
//
// The forward takes embeddings (so that M2SA can splice image features in) and returns the logits and the final
// post-norm hidden state of every position, which is where the [SEG] embeddings come from
// (../shared/spec/M2SA.md section 1.5). Incremental decoding goes through a KVCache.
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <mutex>
#include <vector>

#include "m2sa/io/module_weights.h"
#include "m2sa/models/llama/kv_cache.h"
#include "m2sa/models/llama/llama_config.h"
#include "m2sa/models/llama/llama_layers.h"
#include "m2sa/nn/layers.h"
#include "m2sa/nn/rotary.h"

namespace m2sa::llama {

struct ForwardOptions {
  // [B, T], 1 = real token, 0 = padding, padding only on the right (each row is 1..1 0..0). Undefined = every
  // token is real. Without a cache, padded keys are masked as in HF (training batches). With a cache it covers
  // only this step's T tokens: row b appends its first n_b = sum(mask[b]) tokens (n_b may be 0 to hold a finished
  // sequence in place), so prompts of different lengths can be prefilled together.
  at::Tensor attention_mask;
  // Keys/values of earlier steps; this step's are appended and the cache's lengths advance. Must match the
  // model (layers, heads, dtype, device) and the batch size.
  KVCache* cache = nullptr;
  // [B, T] rotary positions. Default: lengths[b] + t with a cache, t without one. Must be < max_position_embeddings.
  at::Tensor position_ids;
  // Keep the raw output of every decoder layer (HF hidden_states[1..L], but the last one before the final norm).
  bool keep_layer_states = false;
  // Only the logits of each row's last real token ([B, 1, V]); what a decoding loop needs.
  bool last_logits_only = false;
  // A fixed-shape decoding step, as a CUDA graph captures it: one token per row (T = 1, no attention_mask or
  // position_ids, a cache), attention over the cache's whole capacity masked from its device lengths, keys
  // written at the device lengths, the device lengths advanced; the host lengths are left to the caller
  // (KVCache::advance_host_lengths), since a graph replay runs no host code. Equal to the ordinary step.
  bool fixed_shape = false;
};

struct LlamaOutput {
  at::Tensor logits;        // [B, T, V] (or [B, 1, V] with last_logits_only), activations' dtype
  at::Tensor final_hidden;  // [B, T, H] model.norm(last layer) = HF hidden_states[-1]
  std::vector<at::Tensor> layer_states;  // num_hidden_layers x [B, T, H] when keep_layer_states
};

// HF LlamaModel: embed_tokens, layers.{i}, norm.
class LlamaModelImpl : public torch::nn::Module {
 public:
  explicit LlamaModelImpl(const LlamaConfig& config);

  nn::Embedding embed_tokens{nullptr};
  std::vector<LlamaDecoderLayer> layers;
  nn::RMSNorm norm{nullptr};
};
TORCH_MODULE(LlamaModel);

class LlamaForCausalLMImpl : public torch::nn::Module {
 public:
  // Builds shape-only (meta device) inside an nn::ShapeOnlyScope.
  explicit LlamaForCausalLMImpl(const LlamaConfig& config);

  // ids [B, T] integer -> [B, T, H]. Errors name the offending id and the vocabulary size.
  at::Tensor embed(const at::Tensor& ids) const;
  // The same for ids this model generated (argmax over its logits), already int64 on the weights' device: no
  // check, so a decoding step never reads its input back to the host.
  at::Tensor embed_generated(const at::Tensor& ids) const;
  // inputs_embeds [B, T, H] (converted to the weights' dtype; must be on their device).
  LlamaOutput forward(const at::Tensor& inputs_embeds, const ForwardOptions& options = {}) const;
  LlamaOutput forward_ids(const at::Tensor& ids, const ForwardOptions& options = {}) const;

  // Inference: each layer's q/k/v and gate/up as one matmul each, keeping the checkpoint names (the weights become
  // views of the fused ones; nn/fused_linears.h). Call after the final cast and move. Returns how many of the
  // 2 x num_hidden_layers groups were fused (none where LoRA adapters are unmerged or weights require grad).
  int64_t fuse_projections();
  // A cache in the weights' dtype and device. capacity defaults to max_position_embeddings.
  KVCache make_cache(int64_t batch_size, int64_t capacity = -1) const;

  // Recompute each decoder layer in backward instead of storing its activations (training only: active in
  // train mode with grad mode on and no cache).
  void set_gradient_checkpointing(bool on) { gradient_checkpointing_ = on; }
  bool gradient_checkpointing() const { return gradient_checkpointing_; }

  // Loads the LLaMA part of a checkpoint (default rules: key_rules::llama_part(), i.e. model.embed_tokens,
  // model.layers.*, model.norm, lm_head; rotary_emb.inv_freq ignored). Strict.
  LoadReport load(const WeightStore& store, const KeyRules& rules = key_rules::llama_part());

  const LlamaConfig& config() const { return config_; }
  LlamaModel model{nullptr};
  nn::Linear lm_head{nullptr};

 private:
  // Rotary tables for `device`, built once per device (not registered: nothing to load or save).
  nn::RotaryTables rotary(const c10::Device& device) const;

  LlamaConfig config_;
  bool gradient_checkpointing_ = false;
  mutable std::mutex rotary_mutex_;
  mutable nn::RotaryTables rotary_;
};
TORCH_MODULE(LlamaForCausalLM);

}  // namespace m2sa::llama
