// M2SA's early fusion in the mask decoder (`compress_vit`, spec section 1.2): the decoder with compress_vit must
// behave exactly like the plain SAM decoder run on neck + compress_vit(early), where compress_vit is
// conv3x3 -> LayerNorm2d -> GELU (erf) -> conv3x3, both convs with padding 1 and bias.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <cmath>

#include "m2sa/io/module_weights.h"
#include "m2sa/models/sam/builders.h"
#include "test_util.h"

namespace m2sa {
namespace {

// A small M2SA-shaped config: the sizes only need to exercise every path (encoder width != decoder width).
sam::SamConfig small_config(bool compress_vit) {
  sam::SamConfig c;
  auto& e = c.image_encoder;
  e.img_size = 64;
  e.patch_size = 16;
  e.embed_dim = 24;
  e.depth = 2;
  e.num_heads = 2;
  e.out_chans = 16;
  e.window_size = 3;
  e.global_attn_indexes = {1};
  e.early_layer = compress_vit ? 1 : -1;
  c.prompt_encoder.mask_in_chans = 8;
  auto& d = c.mask_decoder;
  d.transformer_mlp_dim = 32;
  d.transformer_num_heads = 2;
  d.iou_head_hidden_dim = 16;
  d.compress_vit = compress_vit;
  return c;
}

// Copies into `to` every tensor of `from` with the same name (`to` must not have names `from` lacks).
void share_weights(sam::SamImpl& from, sam::SamImpl& to) {
  at::NoGradGuard g;
  std::map<std::string, at::Tensor> src;
  for (auto& [name, t] : module_state(from)) src[name] = t;
  for (auto& [name, t] : module_state(to)) t.copy_(src.at(name));
}

// Every parameter random (LayerNorm affines included), so none sits at a neutral value.
void randomise(sam::SamImpl& model) {
  at::NoGradGuard g;
  for (auto& [name, t] : module_state(model)) t.copy_(at::randn_like(t) * 0.5);
}

struct Inputs {
  at::Tensor neck, early, pe, sparse, dense;
};

Inputs make_inputs(const sam::SamImpl& model, int64_t n_prompts) {
  const auto& c = model.config();
  const int64_t g = c.image_embedding_size(), C = c.prompt_embed_dim(), E = c.image_encoder.embed_dim;
  Inputs in;
  in.neck = at::randn({1, C, g, g});
  in.early = at::randn({1, E, g, g});
  in.pe = model.prompt_encoder->get_dense_pe();
  const sam::PromptEmbeddings p = model.prompt_encoder->text_prompt(at::randn({n_prompts, 1, C}));
  in.sparse = p.sparse;
  in.dense = p.dense;
  return in;
}

// compress_vit written out with explicit ops from its parameters.
at::Tensor compress_by_hand(const sam::MaskDecoderImpl& d, const at::Tensor& early) {
  at::Tensor y = at::conv2d(early, d.compress_conv1->weight, d.compress_conv1->bias, {1, 1}, {1, 1});
  const at::Tensor mean = y.mean(1, true);
  const at::Tensor var = (y - mean).pow(2).mean(1, true);
  y = (y - mean) / at::sqrt(var + 1e-6);
  y = y * d.compress_norm->weight.view({1, -1, 1, 1}) + d.compress_norm->bias.view({1, -1, 1, 1});
  y = 0.5 * y * (1 + at::erf(y / std::sqrt(2.0)));
  return at::conv2d(y, d.compress_conv2->weight, d.compress_conv2->bias, {1, 1}, {1, 1});
}

class SamFusion : public ::testing::Test {
 protected:
  void SetUp() override {
    at::manual_seed(7);
    fused = sam::build_sam(small_config(true));
    plain = sam::build_sam(small_config(false));
    randomise(*fused);
    share_weights(*fused, *plain);  // plain has every fused name except compress_vit.*
  }
  at::NoGradGuard no_grad;
  sam::Sam fused{nullptr}, plain{nullptr};
};

TEST_F(SamFusion, EqualsPlainDecoderOnNeckPlusCompressedEarlyFeatures) {
  const Inputs in = make_inputs(*fused, 3);
  const at::Tensor by_hand = compress_by_hand(*fused->mask_decoder, in.early);
  EXPECT_TRUE(test::AllClose(fused->mask_decoder->compress(in.early), by_hand, 1e-5, "compress_vit"));
  for (const bool multi : {false, true}) {
    const auto a = fused->mask_decoder->forward(in.neck, in.early, in.pe, in.sparse, in.dense, multi);
    const auto b = plain->mask_decoder->forward(in.neck + by_hand, std::nullopt, in.pe, in.sparse, in.dense, multi);
    EXPECT_TRUE(test::AllClose(a.masks, b.masks, 1e-4, "masks"));
    EXPECT_TRUE(test::AllClose(a.iou_pred, b.iou_pred, 1e-5, "iou"));
    // ... and the fusion matters: without it the result is different.
    const auto c = plain->mask_decoder->forward(in.neck, std::nullopt, in.pe, in.sparse, in.dense, multi);
    EXPECT_GT(test::max_abs_diff(a.masks, c.masks), 1e-2);
  }
}

// With every compress_vit weight zero except the last conv's bias b, compress_vit(early) is the constant field
// b whatever the features: conv -> 0, LayerNorm2d(0) -> its bias 0, GELU(0) = 0, conv -> b. So the fused
// decoder must equal the plain decoder on neck + b, for any early features; with b = 0 it is the plain decoder.
TEST_F(SamFusion, ZeroFusionWeightsExceptLastBiasAddsThatBias) {
  const Inputs in = make_inputs(*fused, 2);
  auto& d = *fused->mask_decoder;
  for (at::Tensor t : {d.compress_conv1->weight, d.compress_conv1->bias, d.compress_norm->weight,
                       d.compress_norm->bias, d.compress_conv2->weight, d.compress_conv2->bias})
    t.zero_();
  const auto zero = d.forward(in.neck, in.early, in.pe, in.sparse, in.dense, false);
  const auto base = plain->mask_decoder->forward(in.neck, std::nullopt, in.pe, in.sparse, in.dense, false);
  EXPECT_TRUE(test::AllClose(zero.masks, base.masks, 1e-6, "all-zero fusion = plain decoder"));

  const at::Tensor b = at::randn({in.neck.size(1)});
  d.compress_conv2->bias.copy_(b);
  const at::Tensor shifted = in.neck + b.view({1, -1, 1, 1});
  const auto expected = plain->mask_decoder->forward(shifted, std::nullopt, in.pe, in.sparse, in.dense, true);
  for (const at::Tensor& early : {in.early, at::randn_like(in.early) * 10}) {
    const auto got = d.forward(in.neck, early, in.pe, in.sparse, in.dense, true);
    EXPECT_TRUE(test::AllClose(got.masks, expected.masks, 1e-5, "bias-only fusion"));
    EXPECT_TRUE(test::AllClose(got.iou_pred, expected.iou_pred, 1e-5, "bias-only fusion iou"));
  }
  EXPECT_GT(test::max_abs_diff(expected.masks, base.masks), 1e-2) << "the bias must change the result";
}

// The early features feed the decoder through the encoder's tap: block early_layer, channels-last, permuted to
// NCHW; the gradient reaches compress_vit (it is trained in M2SA) even though the encoder runs without grad.
TEST_F(SamFusion, EncoderTapFeedsTheDecoderAndCompressVitIsTrainable) {
  const auto& c = fused->config();
  const at::Tensor image = at::randn({1, 3, c.image_encoder.img_size, c.image_encoder.img_size});
  const sam::EncoderOutput enc = fused->image_encoder->forward(image, true);
  ASSERT_TRUE(enc.early.defined());
  EXPECT_TRUE(at::equal(enc.early, enc.blocks.at(c.image_encoder.early_layer)));
  const at::Tensor early = enc.early.permute({0, 3, 1, 2}).contiguous();  // [1, E, g, g]
  const Inputs in = make_inputs(*fused, 1);
  {
    at::AutoGradMode grad(true);
    const auto out = fused->mask_decoder->forward(enc.neck, early, in.pe, in.sparse, in.dense, false);
    out.masks.sum().backward();
  }
  ASSERT_TRUE(fused->mask_decoder->compress_conv1->weight.grad().defined());
  EXPECT_GT(fused->mask_decoder->compress_conv1->weight.grad().abs().sum().item<double>(), 0.0);
}

}  // namespace
}  // namespace m2sa
