#pragma once
// SAM's two-way transformer (segment_anything/modeling/transformer.py): prompt tokens and image tokens attend
// to each other; cross-attention works at C / attention_downsample_rate internally; LayerNorm eps 1e-5.
//
// State names: layers.{i}.{self_attn,cross_attn_token_to_image,cross_attn_image_to_token}.{q,k,v,out}_proj.*,
// layers.{i}.norm{1,2,3,4}.*, layers.{i}.mlp.{lin1,lin2}.*, final_attn_token_to_image.*, norm_final_attn.*.
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <vector>

#include "m2sa/models/sam/common.h"
#include "m2sa/nn/layers.h"

namespace m2sa::sam {

// transformer.py::Attention: q/k/v projections to C / downsample_rate, heads, out projection back to C.
class DownsampleAttentionImpl : public torch::nn::Module {
 public:
  DownsampleAttentionImpl(int64_t embedding_dim, int64_t num_heads, int64_t downsample_rate = 1);
  // q [B, Tq, C], k/v [B, Tk, C] -> [B, Tq, C]
  at::Tensor forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) const;
  int64_t num_heads, internal_dim;
  nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};
};
TORCH_MODULE(DownsampleAttention);

struct TokensAndImage {
  at::Tensor queries;  // [B, T, C] prompt tokens
  at::Tensor keys;     // [B, h * w, C] image tokens
};

class TwoWayAttentionBlockImpl : public torch::nn::Module {
 public:
  TwoWayAttentionBlockImpl(int64_t embedding_dim, int64_t num_heads, int64_t mlp_dim, int64_t downsample_rate,
                           bool skip_first_layer_pe);
  TokensAndImage forward(const at::Tensor& queries, const at::Tensor& keys, const at::Tensor& query_pe,
                         const at::Tensor& key_pe) const;
  bool skip_first_layer_pe;
  DownsampleAttention self_attn{nullptr}, cross_attn_token_to_image{nullptr}, cross_attn_image_to_token{nullptr};
  nn::LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr}, norm4{nullptr};
  MLPBlock mlp{nullptr};
};
TORCH_MODULE(TwoWayAttentionBlock);

class TwoWayTransformerImpl : public torch::nn::Module {
 public:
  TwoWayTransformerImpl(int64_t depth, int64_t embedding_dim, int64_t num_heads, int64_t mlp_dim,
                        int64_t attention_downsample_rate);
  // image_embedding [B, C, h, w], image_pe [B, C, h, w], point_embedding [B, T, C]
  // -> queries [B, T, C] (after norm_final_attn), keys [B, h * w, C].
  TokensAndImage forward(const at::Tensor& image_embedding, const at::Tensor& image_pe,
                         const at::Tensor& point_embedding) const;
  std::vector<TwoWayAttentionBlock> layers;
  DownsampleAttention final_attn_token_to_image{nullptr};
  nn::LayerNorm norm_final_attn{nullptr};
};
TORCH_MODULE(TwoWayTransformer);

}  // namespace m2sa::sam
