#pragma once
// SAM's prompt encoder (segment_anything/modeling/prompt_encoder.py) with LISA's text path
// (MMR:model/segment_anything/modeling/prompt_encoder.py:140-190, spec section 1.3).
//
// State names: pe_layer.positional_encoding_gaussian_matrix, point_embeddings.{0,1,2,3}.weight (negative
// point, positive point, box corner 1, box corner 2), not_a_point_embed.weight,
// mask_downscaling.{0,1,3,4,6}.*, no_mask_embed.weight.
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "m2sa/models/sam/position_embedding_random.h"
#include "m2sa/models/sam/sam_config.h"
#include "m2sa/nn/layers.h"

namespace m2sa::sam {

// Point prompts in the model input frame (pixels of the resized, padded image; x then y).
struct PointPrompts {
  at::Tensor coords;  // [B, N, 2] floating
  at::Tensor labels;  // [B, N]: 1 foreground, 0 background, -1 padding (not a point)
};

struct PromptEmbeddings {
  at::Tensor sparse;  // [B, T, C] point / box / text tokens
  at::Tensor dense;   // [B, C, g, g] mask embedding, or no_mask_embed broadcast
};

class PromptEncoderImpl : public torch::nn::Module {
 public:
  explicit PromptEncoderImpl(const SamConfig& config);

  // The reference forward(points, boxes, masks). boxes: [B, 4] (or [B, 1, 4]) as x0, y0, x1, y1; masks: low-res
  // mask logits [B, 1, 4g, 4g]. A padding point is appended to the points when no box is given. Every given
  // prompt must have the same batch size B (1 when nothing is given). Errors name the prompt and the expected shape.
  PromptEmbeddings forward(const std::optional<PointPrompts>& points, const std::optional<at::Tensor>& boxes,
                           const std::optional<at::Tensor>& masks) const;

  // LISA's text prompt: sparse = text_embeds [N, T, C] (T = 1: one projected [SEG] embedding per mask),
  // dense = no_mask_embed broadcast to [N, C, g, g].
  PromptEmbeddings text_prompt(const at::Tensor& text_embeds) const;

  // PE of the image embedding grid: [1, C, g, g].
  at::Tensor get_dense_pe() const;

  int64_t embed_dim() const { return embed_dim_; }
  int64_t image_embedding_size() const { return grid_; }
  int64_t input_image_size() const { return input_size_; }

  PositionEmbeddingRandom pe_layer{nullptr};
  std::vector<nn::Embedding> point_embeddings;  // 4 x [1, C]
  nn::Embedding not_a_point_embed{nullptr};
  nn::Conv2d mask_conv1{nullptr}, mask_conv2{nullptr}, mask_conv3{nullptr};  // mask_downscaling.0 / .3 / .6
  nn::LayerNorm2d mask_norm1{nullptr}, mask_norm2{nullptr};                  // mask_downscaling.1 / .4
  nn::Embedding no_mask_embed{nullptr};

 private:
  at::Tensor embed_points(const at::Tensor& coords, const at::Tensor& labels, bool pad) const;
  at::Tensor embed_boxes(const at::Tensor& boxes) const;
  at::Tensor embed_masks(const at::Tensor& masks) const;
  at::Tensor no_mask_dense(int64_t batch) const;
  int64_t embed_dim_, grid_, input_size_;
};
TORCH_MODULE(PromptEncoder);

}  // namespace m2sa::sam
