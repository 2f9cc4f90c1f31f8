// Collation of dataset samples into an M2SA batch (spec 1.1, 1.6, 2.2-2.4, 3.3), and the tiny model running on it.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "m2sa/core/error.h"
#include "m2sa/data/collate.h"
#include "m2sa/models/m2sa/m2sa_trainable.h"
#include "m2sa/text/prompt_encoding.h"
#include "m2sa/train/m2sa_objective.h"
#include "m2sa/vision/clip_preprocess.h"
#include "m2sa/vision/image_io.h"
#include "m2sa/vision/sam_preprocess.h"
#include "models/m2sa/m2sa_test_util.h"

namespace m2sa {
namespace {

using data::CollateConfig;
using data::collate_samples;

using test::error_of;

Tokenizer tokenizer() { return Tokenizer::load(test::repo_root() / "configs" / "tokenizer" / "tokenizer.model"); }

at::Tensor rgb(int64_t h, int64_t w, uint64_t seed) {
  at::manual_seed(seed);
  return at::randint(0, 256, {h, w, 3}, at::kByte);
}

at::Tensor masks(int64_t n, int64_t h, int64_t w) { return (at::rand({n, h, w}) > 0.5).to(at::kByte); }

Sample sample(const std::string& source, std::vector<Dialog> conversations, int64_t n_masks, int64_t h, int64_t w) {
  Sample s;
  s.source = source;
  s.conversations = std::move(conversations);
  s.masks = masks(n_masks, h, w);
  s.height = h;
  s.width = w;
  return s;
}

std::vector<Sample> three_samples() {
  return {
      sample("mmr:1",
             {{{"<image>\nWhich parts hold the cup? Please output segmentation mask.", "The handle [SEG] and the rim [SEG]."}},
              {{"<image>\nWhat is the table? Please output segmentation mask.", "[SEG]."}}},
             3, 40, 60),
      sample("vqa:7", {{{"<image>\nWhat color is it?", "It is red."}, {"Why?", "Paint."}}}, 0, 33, 21),
      sample("refcoco:3", {{{"<image>\nCan you segment the dog in this image?", "It is [SEG]."}}}, 1, 70, 50),
  };
}

TEST(Collate, BuildsTheBatchAsTheReference) {
  const Tokenizer tok = tokenizer();
  const m2sa_model::M2SAConfig c = test::tiny_config();
  const CollateConfig cc = CollateConfig::for_model(c, /*training=*/true);
  const std::vector<Sample> samples = three_samples();
  const std::vector<at::Tensor> images{rgb(40, 60, 1), rgb(33, 21, 2), rgb(70, 50, 3)};
  const data::M2SATrainBatch b = collate_samples(samples, images, tok, cc);

  ASSERT_EQ(b.num_images(), 3);
  EXPECT_EQ(b.inputs.offset, (std::vector<int64_t>{0, 2, 3, 4}));
  EXPECT_EQ(b.num_masks(), 4);
  const int64_t s = c.sam.image_encoder.img_size, cs = c.clip.image_size;
  EXPECT_EQ(b.inputs.images.sam_images.sizes(), (std::vector<int64_t>{3, 3, s, s}));
  EXPECT_EQ(b.inputs.images.clip_images.sizes(), (std::vector<int64_t>{3, 3, cs, cs}));
  for (int i = 0; i < 3; ++i) {
    const auto r = resize_longest_side_shape(images[i].size(0), images[i].size(1), s);
    EXPECT_EQ(b.inputs.images.resized_hw[i], (m2sa_model::ImageSize{r[0], r[1]}));
    EXPECT_EQ(b.inputs.images.original_hw[i], (m2sa_model::ImageSize{images[i].size(0), images[i].size(1)}));
    EXPECT_TRUE(b.inputs.images.sam_images[i].equal(sam_preprocess(images[i], s).image));
    ClipPreprocessConfig pc;
    pc.shortest_edge = pc.crop_size = cs;
    EXPECT_TRUE(b.inputs.images.clip_images[i].equal(clip_preprocess(images[i], pc)));
    EXPECT_TRUE(b.gt_masks[i].equal(samples[i].masks.to(at::kFloat)));
  }
  EXPECT_EQ(b.sources, (std::vector<std::string>{"mmr:1", "vqa:7", "refcoco:3"}));
  // Each row: the rendered llava_v1 conversation, encoded with targets, right-padded with 0.
  ASSERT_EQ(b.inputs.input_ids.size(0), 4);
  const int64_t len = b.inputs.input_ids.size(1);
  for (int64_t r = 0; r < 4; ++r) {
    const EncodedConversation e = encode_conversation(tok, b.conversations[r]);
    const auto n = static_cast<int64_t>(e.ids.size());
    EXPECT_TRUE(b.inputs.input_ids[r].slice(0, 0, n).equal(at::tensor(e.ids, at::kLong))) << r;
    EXPECT_TRUE(b.inputs.labels[r].slice(0, 0, n).equal(at::tensor(e.labels, at::kLong))) << r;
    EXPECT_TRUE(b.inputs.input_ids[r].slice(0, n).eq(0).all().item<bool>());
    EXPECT_TRUE(b.inputs.labels[r].slice(0, n).eq(-100).all().item<bool>());
    EXPECT_EQ(b.inputs.attention_mask[r].sum().item<int64_t>(), n);
    EXPECT_LE(n, len);
  }
  EXPECT_NE(b.conversations[0].find("USER: <im_start><image><im_end>\nWhich parts"), std::string::npos) << b.conversations[0];
  EXPECT_NE(b.conversations[1].find("ASSISTANT: [SEG].</s>"), std::string::npos) << b.conversations[1];
  EXPECT_EQ(b.inputs.input_ids.eq(32000).sum().item<int64_t>(), 4);

  // The tiny model runs on it: one mask per [SEG] at each image's size, and a finite loss with gradients.
  auto model = test::tiny_model();
  m2sa_model::set_trainable(*model, m2sa_model::TrainMode::kLora);
  model->train();
  const m2sa_model::ForwardOutput out = model->forward(b.inputs);
  ASSERT_EQ(out.pred_masks.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(out.pred_masks[i].sizes(), b.gt_masks[i].sizes()) << i;
  const train::LossParts loss = train::m2sa_objective(out, b.gt_masks, train::LossWeights{});
  EXPECT_EQ(loss.num_masks, 4);
  ASSERT_TRUE(std::isfinite(loss.loss.item<double>()));
  loss.loss.backward();
  EXPECT_TRUE(model->text_hidden_fcs->fc1->weight.grad().defined());
  // Parts: weights 1.0 / 0.5 / 2.0 (the paper's defaults).
  const double ce = train::supervised_cross_entropy(out).item<double>();
  EXPECT_NEAR(loss.ce.item<double>(), ce, 1e-6);
  const auto ml = train::mask_losses(out.pred_masks, b.gt_masks, 0.5, 2.0);
  EXPECT_NEAR(loss.mask_bce.item<double>(), ml.bce.item<double>(), 1e-6);
  EXPECT_NEAR(loss.mask_dice.item<double>(), ml.dice.item<double>(), 1e-6);
  EXPECT_NEAR(loss.loss.item<double>(), ce + ml.bce.item<double>() + ml.dice.item<double>(), 1e-5);
}

TEST(Collate, ReadsImagesFromFiles) {
  test::TempDir tmp;
  std::vector<Sample> samples = three_samples();
  const std::vector<at::Tensor> images{rgb(40, 60, 1), rgb(33, 21, 2), rgb(70, 50, 3)};
  for (int i = 0; i < 3; ++i) {
    samples[i].image_path = (tmp / ("img" + std::to_string(i) + ".png")).string();
    write_image(samples[i].image_path, images[i]);
  }
  const CollateConfig cc = CollateConfig::for_model(test::tiny_config(), false);
  const data::M2SATrainBatch a = collate_samples(samples, tokenizer(), cc);
  const data::M2SATrainBatch b = collate_samples(samples, images, tokenizer(), cc);
  EXPECT_TRUE(a.inputs.images.sam_images.equal(b.inputs.images.sam_images));
  EXPECT_TRUE(a.inputs.input_ids.equal(b.inputs.input_ids));
  EXPECT_EQ(a.image_paths[2], samples[2].image_path);
  samples[1].image_path = (tmp / "missing.png").string();
  EXPECT_NE(error_of([&] { collate_samples(samples, tokenizer(), cc); }).find("missing.png"), std::string::npos);
}

TEST(Collate, BadSamplesGiveClearErrors) {
  const Tokenizer tok = tokenizer();
  const m2sa_model::M2SAConfig c = test::tiny_config();
  const CollateConfig cc = CollateConfig::for_model(c, true);
  std::vector<Sample> s = three_samples();
  const std::vector<at::Tensor> images{rgb(40, 60, 1), rgb(33, 21, 2), rgb(70, 50, 3)};
  // More masks than [SEG].
  s[2].masks = masks(2, 70, 50);
  std::string e = error_of([&] { collate_samples(s, images, tok, cc); });
  EXPECT_NE(e.find("refcoco:3"), std::string::npos) << e;
  EXPECT_NE(e.find("hold 1 [SEG] tokens but the sample has 2 masks"), std::string::npos) << e;
  // Masks of another size.
  s = three_samples();
  s[0].masks = masks(3, 41, 60);
  e = error_of([&] { collate_samples(s, images, tok, cc); });
  EXPECT_NE(e.find("mmr:1"), std::string::npos) << e;
  EXPECT_NE(e.find("do not match the image size 40x60"), std::string::npos) << e;
  // No image in the conversation.
  s = three_samples();
  s[2].conversations[0][0].user = "Can you segment the dog?";
  e = error_of([&] { collate_samples(s, images, tok, cc); });
  EXPECT_NE(e.find("holds 0 image placeholders"), std::string::npos) << e;
  // Training truncation that would drop a [SEG].
  s = three_samples();
  CollateConfig small = cc;
  small.model_max_length = c.num_image_tokens() - 1 + 60;
  e = error_of([&] { collate_samples(s, images, tok, small); });
  EXPECT_NE(e.find("mmr:1: truncation to 60 tokens"), std::string::npos) << e;
  EXPECT_NE(e.find("[SEG] tokens"), std::string::npos) << e;
  // Evaluation batches are never truncated.
  small.truncate = false;
  EXPECT_NO_THROW(collate_samples(s, images, tok, small));
  // A tokenizer whose [SEG] id differs from the model's.
  CollateConfig other = cc;
  other.seg_token_id = 32002;
  EXPECT_NE(error_of([&] { collate_samples(s, images, tok, other); }).find("[SEG] id is 32000 but the model expects 32002"),
            std::string::npos);
  // Image / sample count mismatch.
  EXPECT_NE(error_of([&] { collate_samples(s, {images[0]}, tok, cc); }).find("3 samples but 1 images"), std::string::npos);
}

}  // namespace
}  // namespace m2sa
