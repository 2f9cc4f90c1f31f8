#pragma once
// The CLIP vision tower as Hugging Face's CLIPVisionModel (transformers 4.31 modeling_clip.py), with its
// parameter names, so `openai/clip-vit-large-patch14` loads by name:
//   vision_model.embeddings.{class_embedding, patch_embedding.weight, position_embedding.weight}
//   vision_model.pre_layrnorm.*            (HF's spelling)
//   vision_model.encoder.layers.{i}.{self_attn.{q,k,v,out}_proj, layer_norm1, mlp.{fc1,fc2}, layer_norm2}.*
//   vision_model.post_layernorm.*
// LLaVA reads hidden_states[select_layer] (before post_layernorm) and drops CLS (../shared/spec/M2SA.md 1.6).
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <vector>

#include "m2sa/io/module_weights.h"
#include "m2sa/models/clip/clip_config.h"
#include "m2sa/nn/layers.h"

namespace m2sa::clip {

// Class token, bias-free patch convolution, learned positions.
class ClipVisionEmbeddingsImpl : public torch::nn::Module {
 public:
  explicit ClipVisionEmbeddingsImpl(const ClipVisionConfig& config);
  // [B, 3, S, S] -> [B, 1 + num_patches, W] (CLS first, patches row-major), plus the position embedding.
  at::Tensor forward(const at::Tensor& pixel_values) const;

  ClipVisionConfig config;
  at::Tensor class_embedding;  // [W]
  nn::Conv2d patch_embedding{nullptr};
  nn::Embedding position_embedding{nullptr};
};
TORCH_MODULE(ClipVisionEmbeddings);

// Multi-head self-attention with biased q/k/v/out projections, no mask.
class ClipAttentionImpl : public torch::nn::Module {
 public:
  explicit ClipAttentionImpl(const ClipVisionConfig& config);
  at::Tensor forward(const at::Tensor& x) const;  // [B, T, W] -> [B, T, W]

  int64_t num_heads, head_dim;
  nn::Linear k_proj{nullptr}, v_proj{nullptr}, q_proj{nullptr}, out_proj{nullptr};
};
TORCH_MODULE(ClipAttention);

// fc2(quick_gelu(fc1(x))), quick_gelu(x) = x * sigmoid(1.702 x).
class ClipMlpImpl : public torch::nn::Module {
 public:
  explicit ClipMlpImpl(const ClipVisionConfig& config);
  at::Tensor forward(const at::Tensor& x) const;

  nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(ClipMlp);

// Pre-norm block: x += self_attn(layer_norm1(x)); x += mlp(layer_norm2(x)).
class ClipEncoderLayerImpl : public torch::nn::Module {
 public:
  explicit ClipEncoderLayerImpl(const ClipVisionConfig& config);
  at::Tensor forward(const at::Tensor& x) const;  // [B, T, W]

  ClipAttention self_attn{nullptr};
  nn::LayerNorm layer_norm1{nullptr};
  ClipMlp mlp{nullptr};
  nn::LayerNorm layer_norm2{nullptr};
};
TORCH_MODULE(ClipEncoderLayer);

struct ClipVisionOutput {
  // num_hidden_layers + 1 tensors [B, T, W]: [0] = embeddings after pre_layrnorm, [i] = output of encoder layer
  // i - 1 (HF hidden_states; the last one is last_hidden_state, without post_layernorm).
  std::vector<at::Tensor> hidden_states;
  at::Tensor pooler_output;  // [B, W] post_layernorm(CLS token of the last hidden state)
};

// HF CLIPVisionTransformer.
class ClipVisionTransformerImpl : public torch::nn::Module {
 public:
  explicit ClipVisionTransformerImpl(const ClipVisionConfig& config);
  // Runs the first `num_layers` encoder layers (all by default); pooler_output only when all ran.
  ClipVisionOutput forward(const at::Tensor& pixel_values, int64_t num_layers = -1) const;

  ClipVisionConfig config;
  ClipVisionEmbeddings embeddings{nullptr};
  nn::LayerNorm pre_layrnorm{nullptr};
  std::shared_ptr<torch::nn::Module> encoder;  // holds `layers.{i}`
  std::vector<ClipEncoderLayer> layers;
  nn::LayerNorm post_layernorm{nullptr};
};
TORCH_MODULE(ClipVisionTransformer);

// HF CLIPVisionModel: the transformer under the name `vision_model`.
class ClipVisionModelImpl : public torch::nn::Module {
 public:
  // Builds shape-only (meta device) inside an nn::ShapeOnlyScope.
  explicit ClipVisionModelImpl(const ClipVisionConfig& config);

  // pixel_values [B, 3, image_size, image_size], CLIP-normalised (converted to the weights' dtype).
  ClipVisionOutput forward(const at::Tensor& pixel_values) const;
  // LLaVA's image features: hidden_states[select_layer] without CLS ("patch") -> [B, num_patches, W], or with it
  // ("cls_patch") -> [B, 1 + num_patches, W]. Runs only the layers it needs.
  at::Tensor image_features(const at::Tensor& pixel_values) const;

  // Loads `vision_model.*` from an HF CLIP checkpoint (CLIPVisionModel or full CLIPModel: text tower,
  // projections and position_ids are ignored; key_rules::clip_vision). Strict: missing or misshaped keys throw.
  LoadReport load(const WeightStore& store);

  const ClipVisionConfig& config() const { return config_; }
  ClipVisionTransformer vision_model{nullptr};

 private:
  void check_pixels(const at::Tensor& pixel_values) const;
  ClipVisionConfig config_;
};
TORCH_MODULE(ClipVisionModel);

}  // namespace m2sa::clip
