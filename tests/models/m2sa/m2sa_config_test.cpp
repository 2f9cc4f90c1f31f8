// The M2SA model config: the shipped configs, the presets, strictness and cross-section checks.
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <sstream>

#include "m2sa/models/m2sa/m2sa_config.h"
#include "m2sa/models/m2sa/m2sa_model.h"
#include "test_util.h"

namespace m2sa {
namespace {

using m2sa_model::M2SAConfig;

json config_json(const std::string& name) { return read_json_file(test::repo_root() / "configs" / name); }

std::string config_error_of(const json& j) {
  try {
    M2SAConfig::from_json(JsonReader(j, "test.json"));
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(M2SAConfig, ShippedConfigsEqualPresets) {
  const M2SAConfig c7 = m2sa_model::read_model_config(test::repo_root() / "configs" / "m2sa-7b.json");
  const M2SAConfig c13 = m2sa_model::read_model_config(test::repo_root() / "configs" / "m2sa-13b.json");
  EXPECT_EQ(c7.to_json(), M2SAConfig::m2sa_7b().to_json());
  EXPECT_EQ(c13.to_json(), M2SAConfig::m2sa_13b().to_json());
  EXPECT_EQ(c7.num_image_tokens(), 256);
  EXPECT_EQ(c7.mm_hidden_size(), 1024);
  EXPECT_EQ(c13.hidden_size(), 5120);
  EXPECT_EQ(c13.llama.num_hidden_layers, 40);
  EXPECT_DOUBLE_EQ(c13.llama.rms_norm_eps, 1e-5);
  EXPECT_EQ(c13.llama.max_position_embeddings, 4096);
  EXPECT_EQ(c7.m2sa.seg_token_id, 32000);
  EXPECT_EQ(c7.m2sa.lora.r, 8);
  EXPECT_DOUBLE_EQ(c7.m2sa.lora.alpha, 16.0);
}

TEST(M2SAConfig, TinyDerivedSizes) {
  const M2SAConfig c = m2sa_model::read_model_config(test::repo_root() / "configs" / "tiny.json");
  EXPECT_EQ(c.num_image_tokens(), (c.clip.image_size / c.clip.patch_size) * (c.clip.image_size / c.clip.patch_size));
  EXPECT_EQ(c.m2sa.out_dim, c.sam.prompt_embed_dim());
  M2SAConfig cls = c;
  cls.clip.select_feature = "cls_patch";
  EXPECT_EQ(cls.num_image_tokens(), c.num_image_tokens() + 1);
}

TEST(M2SAConfig, RoundTripsThroughJson) {
  const M2SAConfig c = m2sa_model::read_model_config(test::repo_root() / "configs" / "tiny.json");
  const json j = c.to_json();
  EXPECT_EQ(M2SAConfig::from_json(JsonReader(j, "roundtrip")).to_json(), j);
}

TEST(M2SAConfig, StrictAndConsistent) {
  json j = config_json("tiny.json");
  json bad = j;
  bad["m2sa"]["out_dims"] = 64;
  EXPECT_NE(config_error_of(bad).find("out_dims"), std::string::npos) << config_error_of(bad);
  bad = j;
  bad["m2sa"]["out_dim"] = 32;
  EXPECT_NE(config_error_of(bad).find("out_dim 32 must equal the SAM prompt"), std::string::npos) << config_error_of(bad);
  bad = j;
  bad["m2sa"]["seg_token_id"] = 40000;
  EXPECT_NE(config_error_of(bad).find("seg_token_id 40000 is outside the vocabulary"), std::string::npos) << config_error_of(bad);
  bad = j;
  bad["m2sa"]["im_end_token_id"] = 32000;
  EXPECT_NE(config_error_of(bad).find("distinct"), std::string::npos) << config_error_of(bad);
  bad = j;
  bad["m2sa"]["model_max_length"] = 4096;
  EXPECT_NE(config_error_of(bad).find("exceeds llama.max_position_embeddings"), std::string::npos) << config_error_of(bad);
  bad = j;
  bad.erase("m2sa");
  EXPECT_NE(config_error_of(bad).find("m2sa: required field is missing"), std::string::npos) << config_error_of(bad);
  bad = j;
  bad["m2sa"]["lora"]["r"] = 0;
  EXPECT_NE(config_error_of(bad).find("r must be >= 1"), std::string::npos) << config_error_of(bad);
  bad = j;
  bad["extra"] = 1;
  EXPECT_NE(config_error_of(bad).find("unknown field(s): extra"), std::string::npos) << config_error_of(bad);
}

TEST(M2SAConfig, FromHfConfig) {
  // A LISA-style config.json (spec 1.7).
  const json hf = {{"architectures", {"M2SAForCausalLM"}}, {"model_type", "llava"}, {"hidden_size", 5120},
                   {"intermediate_size", 13824}, {"num_hidden_layers", 40}, {"num_attention_heads", 40},
                   {"rms_norm_eps", 1e-5}, {"max_position_embeddings", 4096}, {"vocab_size", 32003},
                   {"hidden_act", "silu"}, {"train_mask_decoder", true}, {"out_dim", 256}, {"use_cache", false},
                   {"mm_use_im_start_end", true}, {"mm_vision_select_layer", -2},
                   {"mm_vision_select_feature", "patch"}, {"mm_hidden_size", 1024},
                   {"vision_tower", "openai/clip-vit-large-patch14"}, {"image_aspect_ratio", "square"},
                   {"torch_dtype", "bfloat16"}, {"rope_scaling", nullptr}};
  const M2SAConfig c = M2SAConfig::from_hf_config(hf, "config.json", clip::ClipVisionConfig::vit_l14_224());
  EXPECT_EQ(c.to_json(), M2SAConfig::m2sa_13b().to_json());
  json bad = hf;
  bad["mm_hidden_size"] = 768;
  try {
    M2SAConfig::from_hf_config(bad, "config.json", clip::ClipVisionConfig::vit_l14_224());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mm_hidden_size"), std::string::npos) << e.what();
  }
}

// The reference chat script always wraps the image in <im_start>/<im_end>: a config.json saying otherwise is
// followed by nobody, so the loader warns (naming the file and field) and wraps.
TEST(M2SAConfig, FromHfConfigWarnsAndWrapsWhenMmUseImStartEndIsFalse) {
  const json hf = {{"hidden_size", 4096}, {"intermediate_size", 11008}, {"num_hidden_layers", 32},
                   {"num_attention_heads", 32}, {"rms_norm_eps", 1e-6}, {"max_position_embeddings", 2048},
                   {"vocab_size", 32003}, {"mm_use_im_start_end", false}, {"mm_hidden_size", 1024}};
  std::ostringstream log;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(log);
  auto logger = spdlog::default_logger();
  logger->sinks().push_back(sink);
  const M2SAConfig c = M2SAConfig::from_hf_config(hf, "folder/config.json", clip::ClipVisionConfig::vit_l14_224());
  logger->sinks().pop_back();
  EXPECT_TRUE(c.m2sa.use_mm_start_end);
  EXPECT_NE(log.str().find("folder/config.json"), std::string::npos) << log.str();
  EXPECT_NE(log.str().find("mm_use_im_start_end is false"), std::string::npos) << log.str();
  json yes = hf;
  yes["mm_use_im_start_end"] = true;
  std::ostringstream quiet;
  auto sink2 = std::make_shared<spdlog::sinks::ostream_sink_mt>(quiet);
  logger->sinks().push_back(sink2);
  EXPECT_TRUE(M2SAConfig::from_hf_config(yes, "config.json", clip::ClipVisionConfig::vit_l14_224()).m2sa.use_mm_start_end);
  logger->sinks().pop_back();
  EXPECT_EQ(quiet.str().find("mm_use_im_start_end"), std::string::npos) << quiet.str();
}

// M2SA's evaluate / chat.py generate up to 2048 tokens, LISA's chat.py 512; LISA weights have no compress_vit.
TEST(M2SAConfig, ReferenceMaxNewTokensFollowsTheLayout) {
  M2SAConfig c = M2SAConfig::m2sa_7b();
  EXPECT_EQ(m2sa_model::reference_max_new_tokens(c), 2048);
  c.sam = sam::SamConfig::vit_h();  // what load_model builds for a checkpoint without compress_vit
  EXPECT_EQ(m2sa_model::reference_max_new_tokens(c), 512);
}

}  // namespace
}  // namespace m2sa
