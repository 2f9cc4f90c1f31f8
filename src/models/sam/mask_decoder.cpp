#include "m2sa/models/sam/mask_decoder.h"

#include <ATen/ATen.h>

#include "m2sa/core/dtype.h"
#include "m2sa/core/error.h"

namespace m2sa::sam {

MaskDecoderImpl::MaskDecoderImpl(const MaskDecoderConfig& c, int64_t dim, int64_t encoder_dim)
    : config_(c), dim_(dim), encoder_dim_(encoder_dim) {
  const int64_t m = c.num_mask_tokens();
  transformer = register_module("transformer", TwoWayTransformer(c.transformer_depth, dim, c.transformer_num_heads,
                                                                 c.transformer_mlp_dim, c.attention_downsample_rate));
  iou_token = register_module("iou_token", nn::Embedding(1, dim));
  mask_tokens = register_module("mask_tokens", nn::Embedding(m, dim));
  auto up = register_container(*this, "output_upscaling");
  upscale_conv1 = up->register_module("0", nn::ConvTranspose2d(dim, dim / 4, 2, 2, true));
  upscale_norm = up->register_module("1", nn::LayerNorm2d(dim / 4, 1e-6));
  upscale_conv2 = up->register_module("3", nn::ConvTranspose2d(dim / 4, dim / 8, 2, 2, true));
  auto hyper = register_container(*this, "output_hypernetworks_mlps");
  for (int64_t i = 0; i < m; ++i)
    output_hypernetworks_mlps.push_back(hyper->register_module(std::to_string(i), MLP(dim, dim, dim / 8, 3)));
  iou_prediction_head = register_module("iou_prediction_head", MLP(dim, c.iou_head_hidden_dim, m, c.iou_head_depth));
  if (c.compress_vit) {
    // Registered last, where the merged M2SA checkpoints list it (tests/fixtures/reference/m2sa_7b_keys.json).
    auto cv = register_container(*this, "compress_vit");
    compress_conv1 = cv->register_module("0", nn::Conv2d(encoder_dim, dim, 3, 1, 1, true));
    compress_norm = cv->register_module("1", nn::LayerNorm2d(dim, 1e-6));
    compress_conv2 = cv->register_module("3", nn::Conv2d(dim, dim, 3, 1, 1, true));
  }
}

at::Tensor MaskDecoderImpl::compress(const at::Tensor& early) const {
  M2SA_CHECK(config_.compress_vit, "SAM mask decoder: compress() needs mask_decoder.compress_vit = true");
  compressed_images_ += early.defined() && early.dim() >= 1 ? early.size(0) : 0;
  // conv3x3 (E -> C) -> LayerNorm2d -> GELU (exact) -> conv3x3 (C -> C)
  return compress_conv2->forward(at::gelu(compress_norm->forward(compress_conv1->forward(early))));
}

at::Tensor MaskDecoderImpl::fuse(const at::Tensor& image_embeddings, const std::optional<at::Tensor>& early) const {
  const char* who = "SAM mask decoder";
  M2SA_CHECK(image_embeddings.defined() && image_embeddings.dim() == 4 && image_embeddings.size(0) == 1 &&
                 image_embeddings.size(1) == dim_ && image_embeddings.size(2) == image_embeddings.size(3),
             who, ": image_embeddings must be one image's embedding [1, ", dim_,
             ", g, g] (decode images one at a time), got ", image_embeddings.sizes());
  const int64_t g = image_embeddings.size(2);
  const at::ScalarType dtype = iou_token->weight.scalar_type();
  if (!config_.compress_vit) {
    M2SA_CHECK(!(early.has_value() && early->defined()), who,
               ": early-block features were given but mask_decoder.compress_vit is off");
    return image_embeddings;
  }
  M2SA_CHECK(early.has_value() && early->defined(), who,
             ": compress_vit is enabled, so the early-block features [1, ", encoder_dim_, ", ", g, ", ", g,
             "] (NCHW) are required");
  M2SA_CHECK(early->dim() == 4 && early->size(0) == 1 && early->size(1) == encoder_dim_ && early->size(2) == g &&
                 early->size(3) == g,
             who, ": early-block features must be [1, ", encoder_dim_, ", ", g, ", ", g, "] (NCHW), got ",
             early->sizes());
  M2SA_CHECK(early->scalar_type() == dtype, who, ": early-block features are ", precision_name(early->scalar_type()),
             " but the decoder weights are ", precision_name(dtype));
  // M2SA: src = repeat_interleave(neck + compress_vit(early), N); the sum is the same for every prompt.
  return image_embeddings + compress(*early);
}

DecoderOutput MaskDecoderImpl::forward(const at::Tensor& image_embeddings, const std::optional<at::Tensor>& early,
                                       const at::Tensor& image_pe, const at::Tensor& sparse,
                                       const at::Tensor& dense, bool multimask_output) const {
  return forward_fused(fuse(image_embeddings, early), image_pe, sparse, dense, multimask_output);
}

DecoderOutput MaskDecoderImpl::forward_fused(const at::Tensor& image, const at::Tensor& image_pe,
                                             const at::Tensor& sparse, const at::Tensor& dense,
                                             bool multimask_output) const {
  const char* who = "SAM mask decoder";
  M2SA_CHECK(image.defined() && image.dim() == 4 && image.size(0) == 1 && image.size(1) == dim_ &&
                 image.size(2) == image.size(3),
             who, ": the image source must be one image's embedding [1, ", dim_,
             ", g, g] (decode images one at a time), got ", image.sizes());
  const int64_t g = image.size(2);
  M2SA_CHECK(image_pe.defined() && image_pe.sizes() == image.sizes(), who, ": image_pe must be [1, ", dim_,
             ", ", g, ", ", g, "] like the image embedding, got ", image_pe.sizes());
  M2SA_CHECK(sparse.defined() && sparse.dim() == 3 && sparse.size(0) >= 1 && sparse.size(2) == dim_, who,
             ": sparse prompt embeddings must be [N, T, ", dim_, "], got ", sparse.sizes());
  const int64_t n = sparse.size(0);
  M2SA_CHECK(dense.defined() && dense.dim() == 4 && dense.size(0) == n && dense.size(1) == dim_ && dense.size(2) == g &&
                 dense.size(3) == g,
             who, ": dense prompt embeddings must be [N, C, g, g] = [", n, ", ", dim_, ", ", g, ", ", g, "], got ",
             dense.sizes());
  const at::ScalarType dtype = iou_token->weight.scalar_type();
  for (const auto& [name, t] : {std::pair<const char*, const at::Tensor*>{"image_embeddings", &image},
                                {"image_pe", &image_pe},
                                {"sparse prompt embeddings", &sparse},
                                {"dense prompt embeddings", &dense}})
    M2SA_CHECK(t->scalar_type() == dtype, who, ": ", name, " are ", precision_name(t->scalar_type()),
               " but the decoder weights are ", precision_name(dtype));

  // tokens = [iou_token, mask_tokens..., sparse prompts] -> [N, 1 + m + T, C]
  const int64_t m = config_.num_mask_tokens();
  at::Tensor output_tokens = at::cat({iou_token->weight, mask_tokens->weight}, 0).unsqueeze(0).expand({n, -1, -1});
  at::Tensor tokens = at::cat({output_tokens, sparse}, 1);

  at::Tensor src = at::repeat_interleave(image, n, 0) + dense;  // [N, C, g, g]
  at::Tensor pos_src = at::repeat_interleave(image_pe, n, 0);    // [N, C, g, g]
  TokensAndImage t = transformer->forward(src, pos_src, tokens);
  at::Tensor iou_token_out = t.queries.select(1, 0);        // [N, C]
  at::Tensor mask_tokens_out = t.queries.slice(1, 1, 1 + m);  // [N, m, C]

  // [N, g*g, C] -> [N, C, g, g], made contiguous (the transposed view is channels-last in memory) so the
  // upscaling convs get plain NCHW.
  at::Tensor upscaled = t.keys.transpose(1, 2).reshape({n, dim_, g, g}).contiguous();
  upscaled = at::gelu(upscale_norm->forward(upscale_conv1->forward(upscaled)));
  upscaled = at::gelu(upscale_conv2->forward(upscaled));  // [N, C/8, 4g, 4g]

  std::vector<at::Tensor> hyper_in_list;
  for (int64_t i = 0; i < m; ++i) hyper_in_list.push_back(output_hypernetworks_mlps[i]->forward(mask_tokens_out.select(1, i)));
  at::Tensor hyper_in = at::stack(hyper_in_list, 1);  // [N, m, C/8]
  const int64_t c8 = upscaled.size(1), h = upscaled.size(2), w = upscaled.size(3);
  at::Tensor masks = at::matmul(hyper_in, upscaled.view({n, c8, h * w})).view({n, m, h, w});
  at::Tensor iou_pred = iou_prediction_head->forward(iou_token_out);  // [N, m]

  DecoderOutput out;
  out.masks = multimask_output ? masks.slice(1, 1) : masks.slice(1, 0, 1);
  out.iou_pred = multimask_output ? iou_pred.slice(1, 1) : iou_pred.slice(1, 0, 1);
  out.transformer_queries = t.queries;
  out.transformer_keys = t.keys;
  return out;
}

}  // namespace m2sa::sam
