#include "m2sa/models/clip/clip_vision.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <functional>
#include <iostream>
#include <regex>

#include "m2sa/core/error.h"
#include "m2sa/io/module_weights.h"
#include "m2sa/nn/init.h"
#include "models/model_fixture.h"
#include "test_util.h"

namespace m2sa::clip {
namespace {

#define EXPECT_ERROR(stmt, text)                                                        \
  do {                                                                                  \
    const std::string _msg = test::m2sa_error_of([&] { stmt; });                                   \
    EXPECT_NE(_msg.find(text), std::string::npos) << "error was: \"" << _msg << "\""; \
  } while (0)

struct ClipFixture {
  test::ModelFixture fx{"clip_tiny"};
  ClipVisionConfig config =
      ClipVisionConfig::from_hf_config(fx.config().at("hf_clip_vision_config"), "clip_tiny.json: config.hf_clip_vision_config");
  ClipVisionModel model{nullptr};

  ClipFixture() {
    model = ClipVisionModel(config);
    LoadReport report = model->load(fx.weights());
    EXPECT_TRUE(report.missing.empty() && report.unexpected.empty()) << report.summary();
    model->to(test::device());
    model->eval();
  }
};

void report(const std::string& name, const at::Tensor& actual, const at::Tensor& expected, double atol) {
  const auto r = test::AllClose(actual, expected, atol, name);
  EXPECT_TRUE(r);
  std::cout << "  " << r.message() << "\n";
}

TEST(ClipParity, EveryFixtureOutput) {
  ClipFixture f;
  at::NoGradGuard no_grad;
  // Weights load bit-exactly.
  for (const auto& [name, t] : module_state(*f.model))
    EXPECT_EQ(test::max_abs_diff(t, f.fx.get(name)), 0.0) << name;

  const at::Tensor pixels = f.fx.get("input.pixel_values");
  const ClipVisionOutput out = f.model->forward(pixels);
  ASSERT_EQ(static_cast<int64_t>(out.hidden_states.size()), f.config.num_hidden_layers + 1);
  const std::regex hidden(R"(output\.hidden_states\.(\d+))");
  int checked = 0;
  for (const auto& name : f.fx.names("output")) {
    const at::Tensor expected = f.fx.get(name);
    const double atol = f.fx.atol(name);
    std::smatch m;
    if (std::regex_match(name, m, hidden)) {
      const auto i = std::stoul(m[1]);
      ASSERT_LT(i, out.hidden_states.size()) << name;
      report(name, out.hidden_states[i], expected, atol);
    } else if (name == "output.llava_image_features") {
      report(name, f.model->image_features(pixels), expected, atol);
    } else if (name == "output.pooler_output") {
      report(name, out.pooler_output, expected, atol);
    } else if (name == "output.image_embeds") {
      // CLIPModel's visual_projection is not part of the vision tower: apply the fixture's matrix by hand.
      report(name, at::matmul(out.pooler_output, f.fx.get("visual_projection.weight").t()), expected, atol);
    } else {
      ADD_FAILURE() << "fixture output " << name << " is not checked by this test";
    }
    ++checked;
  }
  EXPECT_EQ(checked, static_cast<int>(f.fx.names("output").size()));
  EXPECT_GE(checked, f.config.num_hidden_layers + 4);
}

TEST(ClipParity, FeatureSelectionFollowsConfig) {
  ClipFixture f;
  at::NoGradGuard no_grad;
  const at::Tensor pixels = f.fx.get("input.pixel_values");
  const int64_t layers = f.config.num_hidden_layers;
  for (int64_t select : {int64_t{-1}, int64_t{1}, -(layers + 1), layers}) {
    for (const std::string feature : {"patch", "cls_patch"}) {
      ClipVisionConfig c = f.config;
      c.select_layer = select;
      c.select_feature = feature;
      ClipVisionModel m(c);
      m->load(f.fx.weights());
      const at::Tensor got = m->image_features(pixels);
      const int64_t index = select < 0 ? layers + 1 + select : select;
      at::Tensor expected = f.fx.get("output.hidden_states." + std::to_string(index));
      if (feature == "patch") expected = expected.narrow(1, 1, expected.size(1) - 1);
      EXPECT_EQ(got.size(1), c.num_feature_tokens());
      EXPECT_TRUE(test::AllClose(got, expected, f.fx.atol("output.hidden_states." + std::to_string(index)),
                                 "select_layer " + std::to_string(select) + " " + feature));
    }
  }
}

void expect_layout(const ClipVisionConfig& config, const std::string& key_file) {
  nn::ShapeOnlyScope shape_only;
  ClipVisionModel model(config);
  std::map<std::string, std::vector<int64_t>> ours;
  for (const auto& [name, t] : module_state(*model)) {
    EXPECT_TRUE(t.is_meta()) << name << " was allocated";
    ours[name] = t.sizes().vec();
  }
  const auto expected = test::key_list(key_file);
  EXPECT_EQ(expected.size(), 391u);
  EXPECT_EQ(ours, expected);
  for (const auto& [name, shape] : expected) EXPECT_TRUE(ours.count(name)) << "missing " << name;
  for (const auto& [name, shape] : ours) EXPECT_TRUE(expected.count(name)) << "extra " << name;
}

TEST(ClipVision, KeyListOfViTL14At224) { expect_layout(ClipVisionConfig::vit_l14_224(), "clip_vit_l14_keys.json"); }
TEST(ClipVision, KeyListOfViTL14At336) { expect_layout(ClipVisionConfig::vit_l14_336(), "clip_vit_l14_336_keys.json"); }

TEST(ClipVision, PresetsMatchTheKeyFilesConfig) {
  for (const auto& [cfg, file] : {std::pair{ClipVisionConfig::vit_l14_224(), "clip_vit_l14_keys.json"},
                                   std::pair{ClipVisionConfig::vit_l14_336(), "clip_vit_l14_336_keys.json"}}) {
    const json j = read_json_file(test::key_file(file));
    const ClipVisionConfig from_file = ClipVisionConfig::from_hf_config(j.at("config"), file);
    EXPECT_EQ(from_file.to_json(), cfg.to_json()) << file;
    EXPECT_EQ(cfg.num_patches(), j.at("config").at("num_patches").get<int64_t>());
    EXPECT_EQ(cfg.num_positions(), j.at("config").at("num_positions").get<int64_t>());
  }
  EXPECT_EQ(ClipVisionConfig::vit_l14_224().num_feature_tokens(), 256);
  EXPECT_EQ(ClipVisionConfig::vit_l14_224().select_layer_index(), 23);
}

TEST(ClipVision, ConfigJsonIsStrictAndRoundTrips) {
  ClipVisionConfig c = ClipVisionConfig::vit_l14_336();
  c.select_layer = -1;
  c.select_feature = "cls_patch";
  const json j = c.to_json();
  EXPECT_EQ(ClipVisionConfig::from_json(JsonReader(j, "clip.json")).to_json(), j);

  json extra = j;
  extra["projection_dim"] = 768;
  EXPECT_ERROR(ClipVisionConfig::from_json(JsonReader(extra, "clip.json")), "projection_dim");
  json missing = j;
  missing.erase("patch_size");
  EXPECT_ERROR(ClipVisionConfig::from_json(JsonReader(missing, "clip.json")), "clip.json: patch_size");
  json bad = j;
  bad["hidden_act"] = "gelu";
  EXPECT_ERROR(ClipVisionConfig::from_json(JsonReader(bad, "clip.json")), "hidden_act \"gelu\" is not supported");
  bad = j;
  bad["select_layer"] = 30;
  EXPECT_ERROR(ClipVisionConfig::from_json(JsonReader(bad, "clip.json")), "select_layer 30 is outside [-25, 24]");
  bad = j;
  bad["select_feature"] = "cls";
  EXPECT_ERROR(ClipVisionConfig::from_json(JsonReader(bad, "clip.json")), "select_feature \"cls\"");
  bad = j;
  bad["hidden_size"] = 1000;
  EXPECT_ERROR(ClipVisionConfig::from_json(JsonReader(bad, "clip.json")), "not divisible by num_attention_heads");
  bad = j;
  bad["image_size"] = 300;
  EXPECT_ERROR(ClipVisionConfig::from_json(JsonReader(bad, "clip.json")), "not a multiple of patch_size");
}

TEST(ClipVision, HfConfigOfAFullClipModelUsesVisionConfigAndHfDefaults) {
  // The shape of openai/clip-vit-large-patch14's config.json: a CLIPModel config whose vision_config lists only
  // the non-default values, plus many generic fields.
  const json hf = json::parse(R"({
    "architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": 768, "logit_scale_init_value": 2.6592,
    "text_config": {"hidden_size": 768, "model_type": "clip_text_model"},
    "vision_config": {"hidden_size": 1024, "intermediate_size": 4096, "model_type": "clip_vision_model",
                      "num_attention_heads": 16, "num_hidden_layers": 24, "patch_size": 14, "projection_dim": 768,
                      "dropout": 0.0, "torch_dtype": null, "use_bfloat16": false}
  })");
  EXPECT_EQ(ClipVisionConfig::from_hf_config(hf, "config.json").to_json(), ClipVisionConfig::vit_l14_224().to_json());
  const ClipVisionConfig defaults = ClipVisionConfig::from_hf_config(json::object(), "config.json");
  EXPECT_EQ(defaults.hidden_size, 768);
  EXPECT_EQ(defaults.patch_size, 32);
  EXPECT_EQ(defaults.num_hidden_layers, 12);
  json bad = hf;
  bad["vision_config"]["hidden_act"] = "gelu";
  EXPECT_ERROR(ClipVisionConfig::from_hf_config(bad, "config.json"), "config.json: vision_config: hidden_act");
  bad = hf;
  bad["vision_config"]["num_channels"] = 1;
  EXPECT_ERROR(ClipVisionConfig::from_hf_config(bad, "config.json"), "vision_config.num_channels");
  bad = hf;
  bad["vision_config"]["hidden_size"] = "big";
  EXPECT_ERROR(ClipVisionConfig::from_hf_config(bad, "config.json"), "vision_config.hidden_size: expected an integer");
  EXPECT_ERROR(ClipVisionConfig::from_hf_config(json::array(), "config.json"), "expected a JSON object");
}

ClipVisionConfig small_config() {
  ClipVisionConfig c;
  c.hidden_size = 16;
  c.intermediate_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.image_size = 28;
  c.patch_size = 14;
  return c;
}

TEST(ClipVision, BadPixelsGiveClearErrors) {
  ClipVisionModel m(small_config());
  at::NoGradGuard no_grad;
  EXPECT_EQ(m->image_features(at::randn({2, 3, 28, 28})).sizes(), (std::vector<int64_t>{2, 4, 16}));
  EXPECT_ERROR(m->forward(at::randn({1, 3, 32, 32})), "pixel_values must be [B, 3, 28, 28], got [1, 3, 32, 32]");
  EXPECT_ERROR(m->forward(at::randn({1, 1, 28, 28})), "pixel_values must be [B, 3, 28, 28]");
  EXPECT_ERROR(m->forward(at::randn({3, 28, 28})), "pixel_values must be [B, 3, 28, 28]");
  EXPECT_ERROR(m->forward(at::zeros({1, 3, 28, 28}, at::kByte)), "must be floating point");
  EXPECT_ERROR(m->forward(at::Tensor()), "undefined");
}

TEST(ClipVision, LoadNamesMissingAndMisshapenKeys) {
  ClipVisionModel m(small_config());
  std::map<std::string, at::Tensor> w;
  for (const auto& [name, t] : module_state(*m)) w[name] = t.detach().clone();
  w["visual_projection.weight"] = at::zeros({8, 16});          // ignored (CLIPModel key)
  w["vision_model.embeddings.position_ids"] = at::arange(5).unsqueeze(0);  // ignored (old HF buffer)
  EXPECT_EQ(m->load(WeightStore::from_tensors(w, "clip.safetensors")).loaded.size(), module_state(*m).size());
  auto missing = w;
  missing.erase("vision_model.post_layernorm.bias");
  EXPECT_ERROR(m->load(WeightStore::from_tensors(missing, "clip.safetensors")), "vision_model.post_layernorm.bias");
  auto wrong = w;
  wrong["vision_model.embeddings.position_embedding.weight"] = at::zeros({10, 16});
  EXPECT_ERROR(m->load(WeightStore::from_tensors(wrong, "clip.safetensors")),
               "vision_model.embeddings.position_embedding.weight: checkpoint [10, 16] vs model [5, 16]");
}

TEST(ClipVision, Bf16ForwardIsCloseToFp32) {
  ClipVisionModel m(small_config());
  m->eval();
  at::NoGradGuard no_grad;
  const at::Tensor px = at::randn({1, 3, 28, 28});
  const at::Tensor ref = m->image_features(px);
  m->to(at::kBFloat16);
  const at::Tensor got = m->image_features(px);
  EXPECT_EQ(got.scalar_type(), at::kBFloat16);
  EXPECT_LT(test::max_abs_diff(got, ref), 0.1 * ref.abs().max().item<double>() + 0.05);
}

}  // namespace
}  // namespace m2sa::clip
