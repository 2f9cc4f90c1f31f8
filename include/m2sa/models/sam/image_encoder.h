#pragma once
// SAM's ViT image encoder (segment_anything/modeling/image_encoder.py, ViTDet backbone) with M2SA's early-block
// tap (MMR:model/segment_anything/modeling/image_encoder.py:107-129, spec section 1.1): patch embedding,
// absolute position embedding, blocks with windowed attention (token grid padded to a multiple of the window)
// or global attention, decomposed relative position embeddings, MLP, and the neck.
//
// State names: patch_embed.proj.*, pos_embed, blocks.{i}.{norm1,attn.qkv,attn.proj,attn.rel_pos_h,
// attn.rel_pos_w,norm2,mlp.lin1,mlp.lin2}.*, neck.{0,1,2,3}.*.
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "m2sa/models/sam/common.h"
#include "m2sa/models/sam/sam_config.h"
#include "m2sa/nn/layers.h"

namespace m2sa::sam {

// ---- helpers of the reference file, exposed for tests ----

// window_partition: [B, H, W, C] -> [B * nW, ws, ws, C], zero-padding H and W at the end up to multiples of ws.
// Returns the windows and the padded size (Hp, Wp).
std::pair<at::Tensor, std::pair<int64_t, int64_t>> window_partition(const at::Tensor& x, int64_t window_size);
// window_unpartition: the inverse, cropping the padding: -> [B, H, W, C].
at::Tensor window_unpartition(const at::Tensor& windows, int64_t window_size, std::pair<int64_t, int64_t> padded_hw,
                              std::pair<int64_t, int64_t> hw);
// get_rel_pos: the relative position table for q_size queries and k_size keys along one axis,
// [q_size, k_size, head_dim], linearly interpolated (F.interpolate mode "linear", align_corners False) when the
// table does not have 2 * max(q_size, k_size) - 1 rows.
at::Tensor get_rel_pos(int64_t q_size, int64_t k_size, const at::Tensor& rel_pos);
// The int64 gather index of get_rel_pos, flattened [q_size * k_size] (rows of the 2 * max - 1 table), built once
// per (q_size, k_size, device) and kept for the life of the process (thread-safe). The reference rebuilds it on
// the host in every block.
const at::Tensor& rel_pos_index(int64_t q_size, int64_t k_size, c10::Device device);
// The decomposed relative-position bias of add_decomposed_rel_pos, from the *unscaled* queries
// q [B', qh * qw, D]: [B', qh * qw, kh * kw] = rel_h[b, i, k_h] + rel_w[b, i, k_w].
at::Tensor decomposed_rel_pos_bias(const at::Tensor& q, const at::Tensor& rel_pos_h, const at::Tensor& rel_pos_w,
                                   std::pair<int64_t, int64_t> q_size, std::pair<int64_t, int64_t> k_size);

// ---- modules ----

// Conv k = stride = patch; keys proj.*. [B, 3, S, S] -> [B, S/p, S/p, E] channels-last.
class PatchEmbedImpl : public torch::nn::Module {
 public:
  PatchEmbedImpl(int64_t patch_size, int64_t in_chans, int64_t embed_dim);
  at::Tensor forward(const at::Tensor& image) const;
  nn::Conv2d proj{nullptr};
};
TORCH_MODULE(PatchEmbed);

// Multi-head self-attention over a [B, H, W, C] grid with optional decomposed relative position bias.
class EncoderAttentionImpl : public torch::nn::Module {
 public:
  // `input_size`: the grid the relative tables are made for (the window, or the whole token grid).
  EncoderAttentionImpl(int64_t dim, int64_t num_heads, bool qkv_bias, bool use_rel_pos, int64_t input_size);
  at::Tensor forward(const at::Tensor& x) const;  // [B, H, W, C] -> [B, H, W, C]
  int64_t num_heads;
  bool use_rel_pos;
  at::Tensor rel_pos_h, rel_pos_w;  // [2 * input_size - 1, head_dim]
  nn::Linear qkv{nullptr}, proj{nullptr};
};
TORCH_MODULE(EncoderAttention);

// Pre-norm transformer block; window_size > 0 attends within (padded) windows, 0 globally.
class EncoderBlockImpl : public torch::nn::Module {
 public:
  EncoderBlockImpl(const ImageEncoderConfig& config, int64_t window_size);
  at::Tensor forward(const at::Tensor& x) const;  // [B, H, W, C] -> [B, H, W, C]
  int64_t window_size;
  nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  EncoderAttention attn{nullptr};
  MLPBlock mlp{nullptr};
};
TORCH_MODULE(EncoderBlock);

struct EncoderOutput {
  at::Tensor neck;                 // [B, out_chans, g, g] the image embedding
  at::Tensor early;                // [B, g, g, embed_dim] channels-last output of block early_layer; undefined if -1
  std::vector<at::Tensor> blocks;  // [B, g, g, embed_dim] every block's output, only with keep_blocks
};

class ImageEncoderViTImpl : public torch::nn::Module {
 public:
  explicit ImageEncoderViTImpl(const ImageEncoderConfig& config);

  // image [B, 3, img_size, img_size], normalised and padded (Sam.preprocess). Errors name the expected shape.
  EncoderOutput forward(const at::Tensor& image, bool keep_blocks = false) const;
  // patch_embed(image) + pos_embed: [B, g, g, embed_dim] channels-last.
  at::Tensor embed_patches(const at::Tensor& image) const;
  // The neck on a channels-last block output: [B, g, g, embed_dim] -> [B, out_chans, g, g].
  at::Tensor apply_neck(const at::Tensor& tokens) const;

  const ImageEncoderConfig& config() const { return config_; }

  PatchEmbed patch_embed{nullptr};
  at::Tensor pos_embed;  // [1, g, g, embed_dim]; undefined without use_abs_pos
  std::vector<EncoderBlock> blocks;
  nn::Conv2d neck_conv1{nullptr}, neck_conv2{nullptr};  // neck.0 (1x1, no bias), neck.2 (3x3 pad 1, no bias)
  nn::LayerNorm2d neck_norm1{nullptr}, neck_norm2{nullptr};  // neck.1, neck.3

 private:
  void check_image(const at::Tensor& image) const;
  ImageEncoderConfig config_;
};
TORCH_MODULE(ImageEncoderViT);

}  // namespace m2sa::sam
