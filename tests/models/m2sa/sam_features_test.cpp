// SAM features of the M2SA model: batched encoding equals one image at a time, the mask decoder's source
// (neck + compress_vit(early)) is computed once per image and reused by every [SEG], and generation encodes the
// images that need SAM in one batch with the same masks as one image at a time.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "m2sa/core/error.h"
#include "m2sa/models/m2sa/m2sa_model.h"
#include "m2sa/models/m2sa/sam_encoding.h"
#include "models/m2sa/m2sa_test_util.h"

namespace m2sa::m2sa_model {
namespace {

TEST(SamFeatures, BatchedEncoderEqualsOneImageAtATime) {
  auto model = test::tiny_model(3);
  const ImageBatch b = test::random_images(model->config(), {{45, 61}, {64, 30}, {20, 64}});
  at::NoGradGuard no_grad;
  const SamFeatures one = model->sam_features(b.sam_images, /*max_batch=*/1);
  for (int64_t max_batch : {int64_t{2}, kSamEncoderBatch}) {
    const SamFeatures batched = model->sam_features(b.sam_images, max_batch);
    ASSERT_EQ(batched.size(), 3);
    EXPECT_TRUE(test::AllClose(batched.neck, one.neck, 1e-5, "neck"));
    EXPECT_TRUE(test::AllClose(batched.early, one.early, 1e-5, "early"));
    EXPECT_TRUE(test::AllClose(batched.image, one.image, 1e-5, "neck + compress_vit(early)"));
  }
  // The fused source is what the decoder computed from neck and early before (mask_decoder.fuse, image by image).
  for (int64_t i = 0; i < 3; ++i)
    EXPECT_TRUE(at::equal(one.image.slice(0, i, i + 1),
                          model->visual_model->mask_decoder->fuse(one.neck.slice(0, i, i + 1),
                                                                  one.early.slice(0, i, i + 1))))
        << "image " << i;
  EXPECT_THROW(model->sam_features(b.sam_images, 0), Error);
}

TEST(SamFeatures, DecodeMasksReusesTheFusedSourceAndMatchesTheUnfusedPath) {
  auto model = test::tiny_model(4);
  const M2SAConfig& c = model->config();
  const ImageBatch b = test::random_images(c, {{45, 61}, {64, 30}});
  at::NoGradGuard no_grad;
  const auto& decoder = model->visual_model->mask_decoder;
  const int64_t before = decoder->compressed_images();
  const SamFeatures f = model->sam_features(b.sam_images);
  EXPECT_EQ(decoder->compressed_images() - before, 2) << "one compress_vit per image, in sam_features";
  const at::Tensor prompts = at::randn({3, c.m2sa.out_dim});
  const int64_t fused = decoder->compressed_images();
  std::vector<at::Tensor> masks;
  for (int round = 0; round < 3; ++round)
    for (int64_t i = 0; i < 2; ++i)
      masks.push_back(model->decode_masks(prompts, f, i, b.resized_hw[static_cast<std::size_t>(i)],
                                          b.original_hw[static_cast<std::size_t>(i)]));
  EXPECT_EQ(decoder->compressed_images(), fused) << "decode_masks must not run compress_vit again";
  // Features put together by hand (no fused source) give the same masks, fusing in decode_masks.
  SamFeatures by_hand;
  by_hand.neck = f.neck;
  by_hand.early = f.early;
  for (int64_t i = 0; i < 2; ++i)
    EXPECT_TRUE(at::equal(model->decode_masks(prompts, by_hand, i, b.resized_hw[static_cast<std::size_t>(i)],
                                              b.original_hw[static_cast<std::size_t>(i)]),
                          masks[static_cast<std::size_t>(i)]))
        << "image " << i;
  EXPECT_EQ(decoder->compressed_images(), fused + 2);
}

TEST(SamFeatures, GenerationEncodesOnceBatchedAndMatchesOneImageAtATime) {
  auto model = test::always_seg_model(5);
  const M2SAConfig& c = model->config();
  GenerationRequest req;
  req.images = test::random_images(c, {{45, 61}, {64, 30}, {32, 32}});
  // Images 0 and 2 get [SEG]s (two prompts about image 0); image 1 is not asked about.
  req.prompts = {{test::prompt_ids(0), 0}, {test::prompt_ids(3), 2}, {test::prompt_ids(1), 0}};
  GenerationOptions go;
  go.max_new_tokens = 4;
  const auto& decoder = model->visual_model->mask_decoder;
  const int64_t before = decoder->compressed_images();
  const GenerationOutput out = model->generate(req, go);
  // The CPU encodes lazily: only the two images with a [SEG], each fused once for its 8 [SEG]s.
  EXPECT_EQ(decoder->compressed_images() - before, 2);
  at::NoGradGuard no_grad;
  const SamFeatures one = model->sam_features(req.images.sam_images, /*max_batch=*/1);
  for (std::size_t k = 0; k < req.prompts.size(); ++k) {
    const GenerationResult& r = out.results[k];
    ASSERT_EQ(r.seg_indices.size(), 4u) << "prompt " << k;
    const auto img = static_cast<std::size_t>(req.prompts[k].image);
    const at::Tensor expected = model->decode_masks(r.seg_embeddings, one, req.prompts[k].image,
                                                    req.images.resized_hw[img], req.images.original_hw[img]);
    EXPECT_TRUE(test::AllClose(r.masks, expected, 1e-4, "prompt " + std::to_string(k)));
  }
  EXPECT_FALSE(SamEncoding::start(*model, req.images.sam_images).started()) << "no side stream on the CPU";
}

}  // namespace
}  // namespace m2sa::m2sa_model
