#pragma once
// SAM's mask decoder (segment_anything/modeling/mask_decoder.py) with M2SA's fusion convs `compress_vit`
// (MMR:model/segment_anything/modeling/mask_decoder.py:71-76, 131-177; spec section 1.2).
//
// State names: transformer.*, iou_token.weight, mask_tokens.weight, output_upscaling.{0,1,3}.*,
// output_hypernetworks_mlps.{k}.layers.{0,1,2}.*, iou_prediction_head.layers.{i}.*, and with compress_vit
// compress_vit.{0,1,3}.*.
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <vector>

#include "m2sa/models/sam/common.h"
#include "m2sa/models/sam/sam_config.h"
#include "m2sa/models/sam/two_way_transformer.h"
#include "m2sa/nn/layers.h"

namespace m2sa::sam {

struct DecoderOutput {
  at::Tensor masks;               // [N, k, 4g, 4g] low-res mask logits (k = 1, or num_multimask_outputs)
  at::Tensor iou_pred;            // [N, k]
  at::Tensor transformer_queries; // [N, 1 + num_mask_tokens + T, C] two-way transformer output tokens (debugging)
  at::Tensor transformer_keys;    // [N, g * g, C] two-way transformer output image tokens (debugging)
};

class MaskDecoderImpl : public torch::nn::Module {
 public:
  // `encoder_embed_dim` is the in-width of compress_vit (1280 for ViT-H; only used with compress_vit).
  MaskDecoderImpl(const MaskDecoderConfig& config, int64_t transformer_dim, int64_t encoder_embed_dim);

  // image_embeddings [1, C, g, g] (one image), early [1, E, g, g] NCHW early-block features (required iff
  // compress_vit, then src = neck + compress_vit(early)), image_pe [1, C, g, g], sparse [N, T, C],
  // dense [N, C, g, g]. The image is repeated over the N prompts (torch.repeat_interleave). With
  // multimask_output the masks of tokens 1..m, else the single mask of token 0.
  DecoderOutput forward(const at::Tensor& image_embeddings, const std::optional<at::Tensor>& early,
                        const at::Tensor& image_pe, const at::Tensor& sparse_prompt_embeddings,
                        const at::Tensor& dense_prompt_embeddings, bool multimask_output) const;

  // The same with the image source already fused: `image` [1, C, g, g] = fuse(image_embeddings, early). An M2SA
  // model fuses each image once (m2sa_model: SamFeatures::image) and decodes all of its [SEG]s from that.
  DecoderOutput forward_fused(const at::Tensor& image, const at::Tensor& image_pe,
                              const at::Tensor& sparse_prompt_embeddings, const at::Tensor& dense_prompt_embeddings,
                              bool multimask_output) const;
  // What the decoder reads from one image: neck + compress_vit(early) with compress_vit (early [1, E, g, g] NCHW
  // required), else the neck itself (early must be absent). [1, C, g, g].
  at::Tensor fuse(const at::Tensor& image_embeddings, const std::optional<at::Tensor>& early) const;

  // compress_vit(early): [B, E, g, g] -> [B, C, g, g]. Only with compress_vit.
  at::Tensor compress(const at::Tensor& early) const;
  // Images that went through compress() since construction (a count for tests: each image is fused once).
  int64_t compressed_images() const { return compressed_images_.load(); }

  bool has_compress_vit() const { return config_.compress_vit; }
  const MaskDecoderConfig& config() const { return config_; }

  TwoWayTransformer transformer{nullptr};
  nn::Embedding iou_token{nullptr}, mask_tokens{nullptr};
  nn::ConvTranspose2d upscale_conv1{nullptr}, upscale_conv2{nullptr};  // output_upscaling.0 / .3
  nn::LayerNorm2d upscale_norm{nullptr};                                // output_upscaling.1
  std::vector<MLP> output_hypernetworks_mlps;
  MLP iou_prediction_head{nullptr};
  nn::Conv2d compress_conv1{nullptr}, compress_conv2{nullptr};  // compress_vit.0 / .3
  nn::LayerNorm2d compress_norm{nullptr};                       // compress_vit.1

 private:
  MaskDecoderConfig config_;
  int64_t dim_, encoder_dim_;
  mutable std::atomic<int64_t> compressed_images_{0};
};
TORCH_MODULE(MaskDecoder);

}  // namespace m2sa::sam
