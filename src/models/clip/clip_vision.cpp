#include "m2sa/models/clip/clip_vision.h"

#include <ATen/ATen.h>

#include <cmath>
#include <string>

#include "m2sa/core/error.h"
#include "m2sa/io/checkpoint_keys.h"
#include "m2sa/nn/attention.h"
#include "m2sa/nn/init.h"

namespace m2sa::clip {

namespace {

// HF CLIPPreTrainedModel._init_weights with initializer_range 0.02 and factor 1 (only matters for models that
// are not loaded from a checkpoint).
constexpr double kInitRange = 0.02;

void init_linear(nn::Linear& l, double std) {
  nn::normal_(l->weight, 0.0, std);
  if (l->bias.defined()) nn::fill_(l->bias, 0.0);
}

at::Tensor quick_gelu(const at::Tensor& x) { return x * at::sigmoid(1.702 * x); }

}  // namespace

// ---- embeddings ----

ClipVisionEmbeddingsImpl::ClipVisionEmbeddingsImpl(const ClipVisionConfig& c) : config(c) {
  const int64_t w = c.hidden_size;
  class_embedding = nn::new_tensor({w});
  nn::normal_(class_embedding, 0.0, std::pow(static_cast<double>(w), -0.5));
  class_embedding = register_parameter("class_embedding", class_embedding);
  patch_embedding = register_module("patch_embedding", nn::Conv2d(3, w, c.patch_size, c.patch_size, 0, /*bias=*/false));
  nn::normal_(patch_embedding->weight, 0.0, kInitRange);
  position_embedding = register_module("position_embedding", nn::Embedding(c.num_positions(), w));
  nn::normal_(position_embedding->weight, 0.0, kInitRange);
}

at::Tensor ClipVisionEmbeddingsImpl::forward(const at::Tensor& pixel_values) const {
  const int64_t b = pixel_values.size(0);
  // [B, W, g, g] -> [B, g*g, W]
  at::Tensor patches = patch_embedding->forward(pixel_values.to(patch_embedding->weight.scalar_type()));
  patches = patches.flatten(2).transpose(1, 2);
  at::Tensor cls = class_embedding.view({1, 1, -1}).expand({b, 1, class_embedding.size(0)});
  at::Tensor tokens = at::cat({cls, patches}, 1);                    // [B, 1 + g*g, W]
  return tokens + position_embedding->weight.unsqueeze(0);           // positions 0 .. num_positions - 1
}

// ---- attention ----

ClipAttentionImpl::ClipAttentionImpl(const ClipVisionConfig& c)
    : num_heads(c.num_attention_heads), head_dim(c.head_dim()) {
  const int64_t w = c.hidden_size;
  // HF registers k, v, q, out in this order.
  k_proj = register_module("k_proj", nn::Linear(w, w));
  v_proj = register_module("v_proj", nn::Linear(w, w));
  q_proj = register_module("q_proj", nn::Linear(w, w));
  out_proj = register_module("out_proj", nn::Linear(w, w));
  const double in_std = std::pow(static_cast<double>(w), -0.5) * std::pow(2.0 * c.num_hidden_layers, -0.5);
  init_linear(q_proj, in_std);
  init_linear(k_proj, in_std);
  init_linear(v_proj, in_std);
  init_linear(out_proj, std::pow(static_cast<double>(w), -0.5));
}

at::Tensor ClipAttentionImpl::forward(const at::Tensor& x) const {
  const int64_t b = x.size(0), t = x.size(1);
  auto heads = [&](const at::Tensor& y) { return y.view({b, t, num_heads, head_dim}).transpose(1, 2); };
  nn::AttentionOptions opt;
  opt.softmax_fp32 = false;  // HF CLIPAttention runs the softmax in the activations' dtype
  at::Tensor out = nn::attention(heads(q_proj->forward(x)), heads(k_proj->forward(x)), heads(v_proj->forward(x)), opt);
  return out_proj->forward(out.transpose(1, 2).reshape({b, t, num_heads * head_dim}));
}

// ---- MLP ----

ClipMlpImpl::ClipMlpImpl(const ClipVisionConfig& c) {
  fc1 = register_module("fc1", nn::Linear(c.hidden_size, c.intermediate_size));
  fc2 = register_module("fc2", nn::Linear(c.intermediate_size, c.hidden_size));
  init_linear(fc1, std::pow(2.0 * c.hidden_size, -0.5));
  init_linear(fc2, std::pow(static_cast<double>(c.hidden_size), -0.5) * std::pow(2.0 * c.num_hidden_layers, -0.5));
}

at::Tensor ClipMlpImpl::forward(const at::Tensor& x) const { return fc2->forward(quick_gelu(fc1->forward(x))); }

// ---- encoder layer ----

ClipEncoderLayerImpl::ClipEncoderLayerImpl(const ClipVisionConfig& c) {
  self_attn = register_module("self_attn", ClipAttention(c));
  layer_norm1 = register_module("layer_norm1", nn::LayerNorm(c.hidden_size, c.layer_norm_eps));
  mlp = register_module("mlp", ClipMlp(c));
  layer_norm2 = register_module("layer_norm2", nn::LayerNorm(c.hidden_size, c.layer_norm_eps));
}

at::Tensor ClipEncoderLayerImpl::forward(const at::Tensor& x) const {
  at::Tensor h = x + self_attn->forward(layer_norm1->forward(x));
  return h + mlp->forward(layer_norm2->forward(h));
}

// ---- transformer ----

ClipVisionTransformerImpl::ClipVisionTransformerImpl(const ClipVisionConfig& c) : config(c) {
  c.validate();
  embeddings = register_module("embeddings", ClipVisionEmbeddings(c));
  pre_layrnorm = register_module("pre_layrnorm", nn::LayerNorm(c.hidden_size, c.layer_norm_eps));
  encoder = register_module("encoder", std::make_shared<torch::nn::Module>("CLIPEncoder"));
  auto list = encoder->register_module("layers", std::make_shared<torch::nn::Module>("ModuleList"));
  for (int64_t i = 0; i < c.num_hidden_layers; ++i)
    layers.push_back(list->register_module(std::to_string(i), ClipEncoderLayer(c)));
  post_layernorm = register_module("post_layernorm", nn::LayerNorm(c.hidden_size, c.layer_norm_eps));
}

ClipVisionOutput ClipVisionTransformerImpl::forward(const at::Tensor& pixel_values, int64_t num_layers) const {
  const auto total = static_cast<int64_t>(layers.size());
  if (num_layers < 0) num_layers = total;
  M2SA_CHECK(num_layers <= total, "CLIP vision tower: asked for ", num_layers, " layers, the model has ", total);
  ClipVisionOutput out;
  at::Tensor h = pre_layrnorm->forward(embeddings->forward(pixel_values));  // [B, T, W]
  out.hidden_states.reserve(num_layers + 1);
  out.hidden_states.push_back(h);
  for (int64_t i = 0; i < num_layers; ++i) {
    h = layers[i]->forward(h);
    out.hidden_states.push_back(h);
  }
  if (num_layers == total) out.pooler_output = post_layernorm->forward(h.select(1, 0));
  return out;
}

// ---- model ----

ClipVisionModelImpl::ClipVisionModelImpl(const ClipVisionConfig& c) : config_(c) {
  c.validate();
  vision_model = register_module("vision_model", ClipVisionTransformer(c));
}

void ClipVisionModelImpl::check_pixels(const at::Tensor& px) const {
  M2SA_CHECK(px.defined(), "CLIP vision tower: pixel_values is undefined");
  const int64_t s = config_.image_size;
  M2SA_CHECK(px.dim() == 4 && px.size(1) == 3 && px.size(2) == s && px.size(3) == s,
             "CLIP vision tower: pixel_values must be [B, 3, ", s, ", ", s, "], got ", px.sizes());
  M2SA_CHECK(px.size(0) > 0, "CLIP vision tower: empty batch");
  M2SA_CHECK(at::isFloatingType(px.scalar_type()), "CLIP vision tower: pixel_values must be floating point "
             "(CLIP-normalised), got ", px.scalar_type());
  M2SA_CHECK(px.device() == vision_model->pre_layrnorm->weight.device(), "CLIP vision tower: pixel_values on ",
             px.device(), " but the weights are on ", vision_model->pre_layrnorm->weight.device());
}

ClipVisionOutput ClipVisionModelImpl::forward(const at::Tensor& pixel_values) const {
  check_pixels(pixel_values);
  return vision_model->forward(pixel_values);
}

at::Tensor ClipVisionModelImpl::image_features(const at::Tensor& pixel_values) const {
  check_pixels(pixel_values);
  const int64_t index = config_.select_layer_index();
  ClipVisionOutput out = vision_model->forward(pixel_values, index);
  at::Tensor selected = out.hidden_states[index];  // [B, 1 + patches, W]
  if (config_.select_feature == "patch") return selected.narrow(1, 1, selected.size(1) - 1);
  return selected;
}

LoadReport ClipVisionModelImpl::load(const WeightStore& store) {
  LoadOptions options;
  options.rules = key_rules::clip_vision(/*into_m2sa=*/false);
  return with_context("loading the CLIP vision tower from " + store.description(),
                      [&] { return load_weights(*this, store, options); });
}

}  // namespace m2sa::clip
