#include "m2sa/models/sam/two_way_transformer.h"

#include <ATen/ATen.h>

#include <cmath>

#include "m2sa/core/error.h"
#include "m2sa/nn/attention.h"

namespace m2sa::sam {

DownsampleAttentionImpl::DownsampleAttentionImpl(int64_t embedding_dim, int64_t heads, int64_t downsample_rate)
    : num_heads(heads), internal_dim(embedding_dim / downsample_rate) {
  M2SA_CHECK(internal_dim % num_heads == 0, "SAM two-way attention: ", num_heads, " heads do not divide the internal width ",
             internal_dim);
  q_proj = register_module("q_proj", nn::Linear(embedding_dim, internal_dim));
  k_proj = register_module("k_proj", nn::Linear(embedding_dim, internal_dim));
  v_proj = register_module("v_proj", nn::Linear(embedding_dim, internal_dim));
  out_proj = register_module("out_proj", nn::Linear(internal_dim, embedding_dim));
}

namespace {
// [B, T, c] -> [B, heads, T, c / heads]
at::Tensor separate_heads(const at::Tensor& x, int64_t heads) {
  return x.reshape({x.size(0), x.size(1), heads, x.size(2) / heads}).transpose(1, 2);
}
// [B, heads, T, d] -> [B, T, heads * d]
at::Tensor recombine_heads(const at::Tensor& x) {
  return x.transpose(1, 2).reshape({x.size(0), x.size(2), x.size(1) * x.size(3)});
}
}  // namespace

at::Tensor DownsampleAttentionImpl::forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) const {
  at::Tensor qh = separate_heads(q_proj->forward(q), num_heads);
  at::Tensor kh = separate_heads(k_proj->forward(k), num_heads);
  at::Tensor vh = separate_heads(v_proj->forward(v), num_heads);
  // softmax(q k^T / sqrt(c_per_head)) v, as the reference (scale 1 / sqrt(head dim) is nn::attention's default).
  nn::AttentionOptions options;
  options.softmax_fp32 = false;  // the reference softmax runs in the activation dtype
  return out_proj->forward(recombine_heads(nn::attention(qh, kh, vh, options)));
}

TwoWayAttentionBlockImpl::TwoWayAttentionBlockImpl(int64_t dim, int64_t heads, int64_t mlp_dim, int64_t rate, bool skip)
    : skip_first_layer_pe(skip) {
  self_attn = register_module("self_attn", DownsampleAttention(dim, heads, 1));
  norm1 = register_module("norm1", nn::LayerNorm(dim, 1e-5));
  cross_attn_token_to_image = register_module("cross_attn_token_to_image", DownsampleAttention(dim, heads, rate));
  norm2 = register_module("norm2", nn::LayerNorm(dim, 1e-5));
  mlp = register_module("mlp", MLPBlock(dim, mlp_dim, Activation::kRelu));
  norm3 = register_module("norm3", nn::LayerNorm(dim, 1e-5));
  norm4 = register_module("norm4", nn::LayerNorm(dim, 1e-5));
  cross_attn_image_to_token = register_module("cross_attn_image_to_token", DownsampleAttention(dim, heads, rate));
}

TokensAndImage TwoWayAttentionBlockImpl::forward(const at::Tensor& queries_in, const at::Tensor& keys_in,
                                                 const at::Tensor& query_pe, const at::Tensor& key_pe) const {
  at::Tensor queries;
  if (skip_first_layer_pe) {
    // First layer: no PE, and the attention output *replaces* the queries (no residual).
    queries = self_attn->forward(queries_in, queries_in, queries_in);
  } else {
    at::Tensor q = queries_in + query_pe;
    queries = queries_in + self_attn->forward(q, q, queries_in);
  }
  queries = norm1->forward(queries);

  // Tokens attend to the image.
  at::Tensor q = queries + query_pe;
  at::Tensor k = keys_in + key_pe;
  queries = norm2->forward(queries + cross_attn_token_to_image->forward(q, k, keys_in));

  queries = norm3->forward(queries + mlp->forward(queries));

  // The image attends to the tokens.
  q = queries + query_pe;
  k = keys_in + key_pe;
  at::Tensor keys = norm4->forward(keys_in + cross_attn_image_to_token->forward(k, q, queries));
  return {queries, keys};
}

TwoWayTransformerImpl::TwoWayTransformerImpl(int64_t depth, int64_t dim, int64_t heads, int64_t mlp_dim, int64_t rate) {
  auto list = register_container(*this, "layers");
  for (int64_t i = 0; i < depth; ++i)
    layers.push_back(list->register_module(std::to_string(i), TwoWayAttentionBlock(dim, heads, mlp_dim, rate, i == 0)));
  final_attn_token_to_image = register_module("final_attn_token_to_image", DownsampleAttention(dim, heads, rate));
  norm_final_attn = register_module("norm_final_attn", nn::LayerNorm(dim, 1e-5));
}

TokensAndImage TwoWayTransformerImpl::forward(const at::Tensor& image_embedding, const at::Tensor& image_pe,
                                              const at::Tensor& point_embedding) const {
  // [B, C, h, w] -> [B, h * w, C]
  at::Tensor image_tokens = image_embedding.flatten(2).permute({0, 2, 1});
  at::Tensor pe_tokens = image_pe.flatten(2).permute({0, 2, 1});
  at::Tensor queries = point_embedding;
  at::Tensor keys = image_tokens;
  for (const auto& layer : layers) {
    TokensAndImage r = layer->forward(queries, keys, point_embedding, pe_tokens);
    queries = r.queries;
    keys = r.keys;
  }
  at::Tensor q = queries + point_embedding;
  at::Tensor k = keys + pe_tokens;
  queries = norm_final_attn->forward(queries + final_attn_token_to_image->forward(q, k, keys));
  return {queries, keys};
}

}  // namespace m2sa::sam
