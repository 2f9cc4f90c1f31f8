#include "m2sa/models/sam/sam_config.h"

#include <gtest/gtest.h>

#include <functional>

#include "m2sa/core/error.h"
#include "m2sa/models/sam/builders.h"
#include "test_util.h"

namespace m2sa {
namespace {

sam::SamConfig parse(const json& j) { return sam::SamConfig::from_json(JsonReader(j, "sam.json")); }

TEST(SamConfig, PresetsRoundTripThroughJson) {
  for (const auto& c : {sam::SamConfig::vit_b(), sam::SamConfig::vit_l(), sam::SamConfig::vit_h(),
                        sam::SamConfig::m2sa_vit_h()}) {
    const json j = c.to_json();
    EXPECT_EQ(parse(j).to_json(), j);
  }
  const sam::SamConfig h = sam::SamConfig::m2sa_vit_h();
  EXPECT_EQ(h.image_encoder.early_layer, 7);
  EXPECT_TRUE(h.mask_decoder.compress_vit);
  EXPECT_EQ(h.image_embedding_size(), 64);
  EXPECT_EQ(h.prompt_embed_dim(), 256);
  EXPECT_EQ(h.image_encoder.head_dim(), 80);
  EXPECT_EQ(h.image_encoder.mlp_dim(), 5120);
}

TEST(SamConfig, ReadsAFile) {
  test::TempDir dir;
  write_json_file(dir / "sam.json", sam::SamConfig::vit_b().to_json());
  EXPECT_EQ(sam::read_sam_config(dir / "sam.json").image_encoder.embed_dim, 768);
  EXPECT_NE(test::m2sa_error_of([&] { sam::read_sam_config(dir / "none.json"); }).find("none.json"), std::string::npos);
}

TEST(SamConfig, StrictAboutFields) {
  json j = sam::SamConfig::vit_h().to_json();
  json unknown = j;
  unknown["image_encoder"]["drop_path"] = 0.1;
  EXPECT_NE(test::m2sa_error_of([&] { parse(unknown); }).find("sam.json: image_encoder: unknown field(s): drop_path"),
            std::string::npos);
  json top = j;
  top["pixel_mean"] = {1, 2, 3};
  EXPECT_NE(test::m2sa_error_of([&] { parse(top); }).find("unknown field(s): pixel_mean"), std::string::npos);
  json missing = j;
  missing["mask_decoder"].erase("compress_vit");
  EXPECT_NE(test::m2sa_error_of([&] { parse(missing); }).find("sam.json: mask_decoder.compress_vit: required field is missing"),
            std::string::npos);
  json fractional = j;
  fractional["image_encoder"]["depth"] = 31.5;
  EXPECT_NE(test::m2sa_error_of([&] { parse(fractional); }).find("image_encoder.depth: expected an integer, got 31.5"),
            std::string::npos);
  json wrong_type = j;
  wrong_type["image_encoder"]["qkv_bias"] = 1;
  EXPECT_NE(test::m2sa_error_of([&] { parse(wrong_type); }).find("image_encoder.qkv_bias: expected true or false"),
            std::string::npos);
  json list = j;
  list["image_encoder"]["global_attn_indexes"] = {7, "15"};
  EXPECT_NE(test::m2sa_error_of([&] { parse(list); }).find("global_attn_indexes: expected a list of integers"), std::string::npos);
}

TEST(SamConfig, RejectsSizesThatCannotBuildAModel) {
  auto with = [](const std::function<void(json&)>& edit) {
    json j = sam::SamConfig::vit_h().to_json();
    edit(j);
    return test::m2sa_error_of([&] { parse(j); });
  };
  EXPECT_NE(with([](json& j) { j["image_encoder"]["img_size"] = 1000; }).find("not a multiple of patch_size 16"),
            std::string::npos);
  EXPECT_NE(with([](json& j) { j["image_encoder"]["num_heads"] = 7; }).find("image_encoder.embed_dim"), std::string::npos);
  EXPECT_NE(with([](json& j) { j["image_encoder"]["global_attn_indexes"] = {7, 32}; }).find("outside [0, depth = 32)"),
            std::string::npos);
  EXPECT_NE(with([](json& j) { j["image_encoder"]["early_layer"] = 32; }).find("image_encoder.early_layer"),
            std::string::npos);
  EXPECT_NE(with([](json& j) { j["image_encoder"]["window_size"] = -1; }).find("window_size"), std::string::npos);
  EXPECT_NE(with([](json& j) { j["mask_decoder"]["transformer_num_heads"] = 7; }).find("transformer_num_heads"),
            std::string::npos);
  EXPECT_NE(with([](json& j) { j["mask_decoder"]["compress_vit"] = true; }).find("needs the early-block features"),
            std::string::npos);
  EXPECT_NE(with([](json& j) { j["prompt_encoder"]["mask_in_chans"] = 2; }).find("prompt_encoder.mask_in_chans"),
            std::string::npos);
  // Building from an invalid struct fails the same way.
  sam::SamConfig c = sam::SamConfig::vit_b();
  c.image_encoder.depth = 0;
  EXPECT_NE(test::m2sa_error_of([&] { sam::build_sam(c); }).find("image_encoder.depth: must be positive"), std::string::npos);
}

}  // namespace
}  // namespace m2sa
