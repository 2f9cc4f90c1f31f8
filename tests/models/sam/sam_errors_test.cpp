// Bad input gives errors that name what was expected: image tensors, prompts, decoder inputs, checkpoints.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <functional>
#include <map>

#include "m2sa/core/error.h"
#include "m2sa/io/module_weights.h"
#include "m2sa/io/safetensors.h"
#include "m2sa/models/sam/builders.h"
#include "m2sa/models/sam/postprocess.h"
#include "test_util.h"

namespace m2sa {
namespace {

#define EXPECT_REFUSED(stmt, text) EXPECT_NE(test::m2sa_error_of([&] { stmt; }).find(text), std::string::npos) << test::m2sa_error_of([&] { stmt; })

sam::SamConfig tiny(bool compress_vit = false) {
  sam::SamConfig c;
  c.image_encoder.img_size = 32;
  c.image_encoder.patch_size = 8;
  c.image_encoder.embed_dim = 16;
  c.image_encoder.depth = 2;
  c.image_encoder.num_heads = 2;
  c.image_encoder.out_chans = 16;
  c.image_encoder.window_size = 3;
  c.image_encoder.global_attn_indexes = {1};
  c.image_encoder.early_layer = compress_vit ? 1 : -1;
  c.prompt_encoder.mask_in_chans = 8;
  c.mask_decoder.transformer_mlp_dim = 16;
  c.mask_decoder.transformer_num_heads = 2;
  c.mask_decoder.iou_head_hidden_dim = 8;
  c.mask_decoder.compress_vit = compress_vit;
  return c;
}

class SamErrors : public ::testing::Test {
 protected:
  at::NoGradGuard no_grad;
  sam::Sam model = sam::build_sam(tiny());
};

TEST_F(SamErrors, ImageTensorShapeSizeAndDtype) {
  auto& enc = model->image_encoder;
  const char* expected = "expected a normalised, padded image tensor [B, 3, 32, 32]";
  EXPECT_REFUSED(enc->forward(at::zeros({3, 32, 32})), expected);
  EXPECT_REFUSED(enc->forward(at::zeros({1, 3, 32, 24})), expected);
  EXPECT_REFUSED(enc->forward(at::zeros({1, 3, 64, 64})), "got [1, 3, 64, 64]");
  EXPECT_REFUSED(enc->forward(at::zeros({1, 1, 32, 32})), expected);
  EXPECT_REFUSED(enc->forward(at::zeros({1, 32, 32, 3})), expected);  // channels-last by mistake
  EXPECT_REFUSED(enc->forward(at::Tensor()), "undefined");
  EXPECT_REFUSED(enc->forward(at::zeros({1, 3, 32, 32}, at::kDouble)), "the encoder weights are fp32");
  EXPECT_REFUSED(enc->forward(at::zeros({1, 3, 32, 32}, at::kByte)), "convert the image to the model's dtype");
  EXPECT_EQ(enc->forward(at::zeros({2, 3, 32, 32})).neck.sizes(), (std::vector<int64_t>{2, 16, 4, 4}));
}

TEST_F(SamErrors, PromptShapes) {
  auto& pe = model->prompt_encoder;
  const at::Tensor coords = at::rand({1, 2, 2}) * 32, labels = at::ones({1, 2}, at::kLong);
  EXPECT_REFUSED(pe->forward(sam::PointPrompts{at::rand({1, 2, 3}), labels}, std::nullopt, std::nullopt),
               "point coords must be a floating tensor [B, N, 2]");
  EXPECT_REFUSED(pe->forward(sam::PointPrompts{at::rand({2, 2}), labels}, std::nullopt, std::nullopt), "[B, N, 2]");
  EXPECT_REFUSED(pe->forward(sam::PointPrompts{coords, at::ones({1, 3}, at::kLong)}, std::nullopt, std::nullopt),
               "point labels must be [B, N] = [1, 2]");
  EXPECT_REFUSED(pe->forward(sam::PointPrompts{coords, at::full({1, 2}, 2, at::kLong)}, std::nullopt, std::nullopt),
               "point labels must be 1 (foreground), 0 (background) or -1");
  EXPECT_REFUSED(pe->forward(sam::PointPrompts{coords, at::Tensor()}, std::nullopt, std::nullopt), "need both");
  EXPECT_REFUSED(pe->forward(std::nullopt, at::rand({1, 3}), std::nullopt), "boxes must be a floating tensor [B, 4]");
  EXPECT_REFUSED(pe->forward(std::nullopt, at::rand({1, 2, 4}), std::nullopt), "[B, 1, 4]");
  EXPECT_REFUSED(pe->forward(std::nullopt, std::nullopt, at::rand({1, 1, 32, 32})),
               "mask prompts must be low-res mask logits [B, 1, 16, 16]");
  EXPECT_REFUSED(pe->forward(sam::PointPrompts{at::rand({2, 1, 2}), at::ones({2, 1})}, at::rand({3, 4}), std::nullopt),
               "boxes have batch size 3 but points have 2");
  EXPECT_REFUSED(pe->text_prompt(at::rand({2, 1, 8})), "text prompts must be [N, 1, 16]");
  EXPECT_REFUSED(pe->text_prompt(at::rand({2, 16})), "text prompts must be [N, 1, 16]");
  // The accepted forms.
  EXPECT_EQ(pe->forward(sam::PointPrompts{coords, labels}, at::rand({1, 1, 4}), std::nullopt).sparse.size(1), 4);
  EXPECT_EQ(pe->forward(sam::PointPrompts{coords, at::zeros({1, 2}, at::kInt)}, std::nullopt, std::nullopt).sparse.size(1), 3);
}

TEST_F(SamErrors, DecoderInputs) {
  auto& d = model->mask_decoder;
  const at::Tensor image = at::randn({1, 16, 4, 4}), pe = model->prompt_encoder->get_dense_pe();
  const sam::PromptEmbeddings p = model->prompt_encoder->text_prompt(at::randn({3, 1, 16}));
  EXPECT_REFUSED(d->forward(at::randn({2, 16, 4, 4}), std::nullopt, pe, p.sparse, p.dense, false),
               "image_embeddings must be one image's embedding [1, 16, g, g]");
  EXPECT_REFUSED(d->forward(at::randn({1, 8, 4, 4}), std::nullopt, pe, p.sparse, p.dense, false), "[1, 16, g, g]");
  EXPECT_REFUSED(d->forward(image, std::nullopt, at::randn({1, 16, 5, 5}), p.sparse, p.dense, false),
               "image_pe must be [1, 16, 4, 4]");
  EXPECT_REFUSED(d->forward(image, std::nullopt, pe, at::randn({3, 16}), p.dense, false),
               "sparse prompt embeddings must be [N, T, 16]");
  EXPECT_REFUSED(d->forward(image, std::nullopt, pe, p.sparse, p.dense.slice(0, 0, 2), false),
               "dense prompt embeddings must be [N, C, g, g] = [3, 16, 4, 4]");
  EXPECT_REFUSED(d->forward(image, at::randn({1, 16, 4, 4}), pe, p.sparse, p.dense, false),
               "early-block features were given but mask_decoder.compress_vit is off");
  EXPECT_REFUSED(d->forward(image.to(at::kDouble), std::nullopt, pe, p.sparse, p.dense, false),
               "image_embeddings are Double but the decoder weights are fp32");

  sam::Sam fused = sam::build_sam(tiny(true));
  auto& fd = fused->mask_decoder;
  EXPECT_REFUSED(fd->forward(image, std::nullopt, pe, p.sparse, p.dense, false),
               "compress_vit is enabled, so the early-block features [1, 16, 4, 4] (NCHW) are required");
  EXPECT_REFUSED(fd->forward(image, at::randn({1, 4, 4, 16}).permute({0, 3, 1, 2}).slice(1, 0, 8), pe, p.sparse, p.dense,
                           false),
               "early-block features must be [1, 16, 4, 4] (NCHW)");
  EXPECT_REFUSED(model->mask_decoder->compress(at::randn({1, 16, 4, 4})), "needs mask_decoder.compress_vit = true");
  EXPECT_EQ(fd->forward(image, at::randn({1, 16, 4, 4}), pe, p.sparse, p.dense, true).masks.sizes(),
            (std::vector<int64_t>{3, 3, 16, 16}));
}

TEST_F(SamErrors, PostprocessSizes) {
  const at::Tensor m = at::randn({2, 1, 16, 16});
  EXPECT_REFUSED(sam::postprocess_masks(m, 32, {40, 20}, {50, 25}), "input size (40, 20) must lie inside the 32x32");
  EXPECT_REFUSED(sam::postprocess_masks(m, 32, {32, 20}, {0, 25}), "original size (0, 25) must be positive");
  EXPECT_REFUSED(sam::postprocess_masks(at::randn({16, 16}), 32, {32, 20}, {50, 25}), "[N, k, h, w]");
  const at::Tensor out = model->postprocess_masks(m.to(at::kBFloat16), {32, 20}, {50, 31});
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{2, 1, 50, 31}));
  EXPECT_EQ(out.scalar_type(), at::kFloat);
}

// A checkpoint with a missing key and a mis-shaped key: the error names the file, both keys and both shapes,
// and the model keeps its values (nothing half-loaded).
TEST_F(SamErrors, CheckpointMissingAndMisshapedKeys) {
  test::TempDir dir;
  NamedTensors good = module_state(*model);
  NamedTensors bad;
  for (const auto& [name, t] : good) {
    if (name == "mask_decoder.iou_token.weight") continue;                                   // missing
    if (name == "image_encoder.pos_embed") bad.emplace_back(name, at::zeros({1, 5, 5, 16}));  // wrong shape
    else bad.emplace_back(name, t.clone());
  }
  write_safetensors(dir / "bad.safetensors", bad);
  const at::Tensor before = model->image_encoder->pos_embed.clone();
  const std::string err = test::m2sa_error_of([&] { sam::load_sam_checkpoint(*model, WeightStore::open(dir / "bad.safetensors")); });
  EXPECT_NE(err.find("bad.safetensors"), std::string::npos) << err;
  EXPECT_NE(err.find("image_encoder.pos_embed: checkpoint [1, 5, 5, 16] vs model [1, 4, 4, 16]"), std::string::npos) << err;
  EXPECT_NE(err.find("missing from the checkpoint:\n    mask_decoder.iou_token.weight"), std::string::npos) << err;
  EXPECT_TRUE(at::equal(model->image_encoder->pos_embed, before));

  // An extra key is unexpected in a strict load.
  NamedTensors extra = good;
  extra.emplace_back("mask_decoder.extra.weight", at::zeros({2}));
  write_safetensors(dir / "extra.safetensors", extra);
  EXPECT_REFUSED(sam::load_sam_checkpoint(*model, WeightStore::open(dir / "extra.safetensors")),
               "unexpected in the checkpoint:\n    mask_decoder.extra.weight");

  // Stock SAM weights into an M2SA model: compress_vit is missing, allowed only when asked for.
  sam::Sam fused = sam::build_sam(tiny(true));
  write_safetensors(dir / "stock.safetensors", good);
  const WeightStore stock = WeightStore::open(dir / "stock.safetensors");
  EXPECT_REFUSED(sam::load_sam_checkpoint(*fused, stock), "mask_decoder.compress_vit.0.weight");
  const LoadReport report = sam::load_sam_checkpoint(*fused, stock, /*allow_missing_compress_vit=*/true);
  EXPECT_EQ(report.allowed_missing.size(), 6u);
  EXPECT_EQ(report.loaded.size(), good.size());
}

}  // namespace
}  // namespace m2sa
