// Parity of the SAM components with the reference segment_anything outputs in the sam_tiny fixture
// ($M2SA_FIXTURE_DIR/sam_tiny.*; tests/fixtures/reference/README.md). Every size comes from the sidecar and the
// tensor shapes, so another fixture set of the same format (other sizes, window padding, non-square originals)
// runs unchanged. Tolerances are the sidecar's per-output atol_fp32.
//
// Not compared here: `output.preprocessed_image` (Sam.preprocess: normalise + pad). SAM preprocessing belongs to
// the vision layer and is tested there; these tests take that fixture tensor as the encoder input.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <iostream>
#include <map>
#include <regex>
#include <set>

#include "m2sa/io/module_weights.h"
#include "m2sa/models/sam/builders.h"
#include "m2sa/models/sam/postprocess.h"
#include "m2sa/models/sam/sam.h"
#include "m2sa/nn/init.h"
#include "sam_fixture.h"
#include "test_util.h"

namespace m2sa {
namespace {

using sam::PointPrompts;
using sam::PromptEmbeddings;

class SamParity : public ::testing::Test {
 protected:
  void SetUp() override { model = fx.load_model(); }

  // Compares with the fixture output of that name at its tolerance.
  // Prints the measured error so the margins are visible in the test log.
  void expect_output(const at::Tensor& actual, const std::string& name) const {
    const ::testing::AssertionResult r = test::AllClose(actual, fx.tensor(name), fx.atol(name), name);
    EXPECT_TRUE(r);
    if (r) std::cout << "  " << r.message() << "\n";
  }

  PointPrompts points() const { return {fx.tensor("input.point_coords"), fx.tensor("input.point_labels")}; }

  // The prompt-encoder call of one fixture case (output.prompt.<case>.*).
  PromptEmbeddings prompt_case(const std::string& name) const {
    const auto& pe = model->prompt_encoder;
    if (name == "none") return pe->forward(std::nullopt, std::nullopt, std::nullopt);
    if (name == "points") return pe->forward(points(), std::nullopt, std::nullopt);
    if (name == "box") return pe->forward(std::nullopt, fx.tensor("input.box"), std::nullopt);
    if (name == "mask") return pe->forward(std::nullopt, std::nullopt, fx.tensor("input.mask_input"));
    if (name == "points_box") return pe->forward(points(), fx.tensor("input.box"), std::nullopt);
    ADD_FAILURE() << "sam fixture: unknown prompt case '" << name << "' (no test knows its inputs)";
    return {};
  }

  at::NoGradGuard no_grad;
  test::SamFixture fx;
  sam::Sam model{nullptr};
};

// Every `output.*` entry of the sidecar is compared by one of the tests below; a fixture set with outputs we do
// not know fails here instead of being skipped silently.
TEST_F(SamParity, EveryFixtureOutputIsCovered) {
  const std::vector<std::regex> covered = {
      std::regex(R"(output\.preprocessed_image)"),  // vision layer (see the file comment)
      std::regex(R"(output\.image_encoder\.patch_embed_plus_pos)"),
      std::regex(R"(output\.image_encoder\.blocks\.\d+)"),
      std::regex(R"(output\.image_embeddings)"),
      std::regex(R"(output\.dense_pe)"),
      std::regex(R"(output\.prompt\.(none|points|box|mask|points_box)\.(sparse|dense))"),
      std::regex(R"(output\.text\.(single|multi)\.(low_res_masks|iou_predictions))"),
      std::regex(R"(output\.text\.transformer_(queries|keys))"),
      std::regex(R"(output\.text\.single\.postprocessed_masks)"),
      std::regex(R"(output\.points\.(single|multi)\.(low_res_masks|iou_predictions))"),
      std::regex(R"(output\.points\.multi\.postprocessed_masks)"),
  };
  const auto outputs = fx.names_of_kind("output");
  EXPECT_FALSE(outputs.empty());
  for (const auto& name : outputs) {
    bool known = false;
    for (const auto& re : covered) known = known || std::regex_match(name, re);
    EXPECT_TRUE(known) << "fixture output '" << name << "' is not compared by any SamParity test";
    EXPECT_TRUE(fx.has(name)) << name << " is in the sidecar but not in sam_tiny.safetensors";
  }
}

TEST_F(SamParity, WeightsLoadStrictlyAndExactlyFromSafetensors) {
  sam::Sam fresh = sam::build_sam(fx.config());
  const LoadReport report = fx.load_into(*fresh);
  const auto weights = fx.names_of_kind("weight");
  EXPECT_EQ(report.loaded.size(), weights.size()) << report.summary();
  EXPECT_TRUE(report.missing.empty() && report.unexpected.empty() && report.allowed_missing.empty()) << report.summary();
  EXPECT_EQ(report.ignored, fx.names_of_kind("input").size() + fx.names_of_kind("output").size());
  // Bit-identical after loading (fixture README: weights must be exact).
  const auto state = module_state(*fresh);
  EXPECT_EQ(state.size(), weights.size());
  for (const auto& [name, t] : state) EXPECT_TRUE(at::equal(t, fx.tensor(name))) << name;
}

TEST_F(SamParity, ImageEncoderEveryBlockAndNeck) {
  // The encoder input is the reference's preprocessed image (preprocessing is tested in the vision layer).
  const at::Tensor image = fx.tensor("output.preprocessed_image");
  expect_output(model->image_encoder->embed_patches(image), "output.image_encoder.patch_embed_plus_pos");
  const sam::EncoderOutput out = model->image_encoder->forward(image, /*keep_blocks=*/true);
  ASSERT_EQ(static_cast<int64_t>(out.blocks.size()), fx.config().image_encoder.depth);
  int64_t compared = 0;
  for (size_t i = 0; i < out.blocks.size(); ++i) {
    const std::string name = "output.image_encoder.blocks." + std::to_string(i);
    if (!fx.has(name)) continue;
    expect_output(out.blocks[i], name);
    ++compared;
  }
  EXPECT_EQ(compared, fx.config().image_encoder.depth) << "the fixture should hold every block's output";
  expect_output(out.neck, "output.image_embeddings");
  EXPECT_FALSE(out.early.defined()) << "early_layer = -1 must not tap a block";
}

// The early-layer tap returns exactly the (channels-last) output of the configured block, at any index.
TEST_F(SamParity, EarlyLayerTapAtEveryBlock) {
  const at::Tensor image = fx.tensor("output.preprocessed_image");
  for (int64_t i = 0; i < fx.config().image_encoder.depth; ++i) {
    sam::SamConfig config = fx.config();
    config.image_encoder.early_layer = i;
    sam::Sam tapped = fx.load_model(config);
    const sam::EncoderOutput out = tapped->image_encoder->forward(image);
    const std::string name = "output.image_encoder.blocks." + std::to_string(i);
    ASSERT_TRUE(out.early.defined()) << "early_layer " << i;
    expect_output(out.early, name);
    expect_output(out.neck, "output.image_embeddings");
    EXPECT_TRUE(out.blocks.empty());
  }
}

TEST_F(SamParity, DensePositionalEncoding) {
  expect_output(model->prompt_encoder->get_dense_pe(), "output.dense_pe");
}

TEST_F(SamParity, EveryPromptCase) {
  std::set<std::string> cases;
  const std::regex re(R"(output\.prompt\.(\w+)\.(sparse|dense))");
  for (const auto& name : fx.names_of_kind("output")) {
    std::smatch m;
    if (std::regex_match(name, m, re)) cases.insert(m[1]);
  }
  EXPECT_FALSE(cases.empty());
  for (const auto& c : cases) {
    SCOPED_TRACE("prompt case " + c);
    const PromptEmbeddings e = prompt_case(c);
    expect_output(e.sparse, "output.prompt." + c + ".sparse");
    expect_output(e.dense, "output.prompt." + c + ".dense");
  }
}

// LISA's call: sparse = text embeddings, dense = no-mask embedding, image embedding repeated over the prompts.
// Inputs are the fixture's image embedding and PE, so the decoder is checked on its own.
TEST_F(SamParity, TextPromptDecoderBothMultimaskModesAndPostprocess) {
  const at::Tensor image_embeddings = fx.tensor("output.image_embeddings");
  const at::Tensor pe = fx.tensor("output.dense_pe");
  const PromptEmbeddings prompt = model->prompt_encoder->text_prompt(fx.tensor("input.text_embeddings"));
  EXPECT_TRUE(at::equal(prompt.sparse, fx.tensor("input.text_embeddings")));

  const sam::DecoderOutput single =
      model->mask_decoder->forward(image_embeddings, std::nullopt, pe, prompt.sparse, prompt.dense, false);
  expect_output(single.masks, "output.text.single.low_res_masks");
  expect_output(single.iou_pred, "output.text.single.iou_predictions");
  expect_output(single.transformer_queries, "output.text.transformer_queries");
  expect_output(single.transformer_keys, "output.text.transformer_keys");
  expect_output(model->postprocess_masks(single.masks, fx.input_size(), fx.original_size()),
                "output.text.single.postprocessed_masks");

  const sam::DecoderOutput multi =
      model->mask_decoder->forward(image_embeddings, std::nullopt, pe, prompt.sparse, prompt.dense, true);
  expect_output(multi.masks, "output.text.multi.low_res_masks");
  expect_output(multi.iou_pred, "output.text.multi.iou_predictions");
}

TEST_F(SamParity, PointPromptDecoderBothMultimaskModesAndPostprocess) {
  const at::Tensor image_embeddings = fx.tensor("output.image_embeddings");
  const at::Tensor pe = fx.tensor("output.dense_pe");
  const at::Tensor sparse = fx.tensor("output.prompt.points.sparse");
  const at::Tensor dense = fx.tensor("output.prompt.points.dense");
  const sam::DecoderOutput single = model->mask_decoder->forward(image_embeddings, std::nullopt, pe, sparse, dense, false);
  expect_output(single.masks, "output.points.single.low_res_masks");
  expect_output(single.iou_pred, "output.points.single.iou_predictions");
  const sam::DecoderOutput multi = model->mask_decoder->forward(image_embeddings, std::nullopt, pe, sparse, dense, true);
  expect_output(multi.masks, "output.points.multi.low_res_masks");
  expect_output(multi.iou_pred, "output.points.multi.iou_predictions");
  expect_output(model->postprocess_masks(multi.masks, fx.input_size(), fx.original_size()),
                "output.points.multi.postprocessed_masks");
}

// The whole chain from the preprocessed image with nothing taken from the fixture's intermediate outputs.
TEST_F(SamParity, EndToEndFromPreprocessedImage) {
  const sam::EncoderOutput enc = model->image_encoder->forward(fx.tensor("output.preprocessed_image"));
  const at::Tensor pe = model->prompt_encoder->get_dense_pe();
  const PromptEmbeddings text = model->prompt_encoder->text_prompt(fx.tensor("input.text_embeddings"));
  for (const bool multi : {false, true}) {
    const std::string mode = multi ? "multi" : "single";
    const sam::DecoderOutput out = model->mask_decoder->forward(enc.neck, std::nullopt, pe, text.sparse, text.dense, multi);
    expect_output(out.masks, "output.text." + mode + ".low_res_masks");
    expect_output(out.iou_pred, "output.text." + mode + ".iou_predictions");
    if (!multi)
      expect_output(model->postprocess_masks(out.masks, fx.input_size(), fx.original_size()),
                    "output.text.single.postprocessed_masks");
  }
  const PromptEmbeddings points = prompt_case("points");
  for (const bool multi : {false, true}) {
    const std::string mode = multi ? "multi" : "single";
    const sam::DecoderOutput out = model->mask_decoder->forward(enc.neck, std::nullopt, pe, points.sparse, points.dense, multi);
    expect_output(out.masks, "output.points." + mode + ".low_res_masks");
    expect_output(out.iou_pred, "output.points." + mode + ".iou_predictions");
    if (multi)
      expect_output(model->postprocess_masks(out.masks, fx.input_size(), fx.original_size()),
                    "output.points.multi.postprocessed_masks");
  }
}

// sam_tiny.pth (torch.save of the same state_dict) loads strictly by name and gives the same model.
TEST_F(SamParity, LoadsFromTorchSaveCheckpoint) {
  sam::Sam from_pth = sam::build_sam(fx.config());
  const WeightStore pth = WeightStore::open(test::fixture("sam_tiny.pth"));
  const LoadReport report = sam::load_sam_checkpoint(*from_pth, pth);
  EXPECT_EQ(report.loaded.size(), fx.names_of_kind("weight").size()) << report.summary();
  for (const auto& [name, t] : module_state(*from_pth)) EXPECT_TRUE(at::equal(t, fx.tensor(name))) << name;

  const sam::EncoderOutput enc = from_pth->image_encoder->forward(fx.tensor("output.preprocessed_image"));
  expect_output(enc.neck, "output.image_embeddings");
  const PromptEmbeddings text = from_pth->prompt_encoder->text_prompt(fx.tensor("input.text_embeddings"));
  const sam::DecoderOutput out = from_pth->mask_decoder->forward(
      enc.neck, std::nullopt, from_pth->prompt_encoder->get_dense_pe(), text.sparse, text.dense, false);
  expect_output(out.masks, "output.text.single.low_res_masks");
  expect_output(from_pth->postprocess_masks(out.masks, fx.input_size(), fx.original_size()),
                "output.text.single.postprocessed_masks");
}

}  // namespace
}  // namespace m2sa
