// The full-size parameter layouts, built shape-only (meta device, nothing allocated) and compared with the
// reference key lists: tests/fixtures/reference/sam_vit_h_keys.json (build_sam_vit_h state_dict) and the
// `model.visual_model.*` part of the merged M2SA checkpoints (m2sa_{7b,13b}_keys.json).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "m2sa/io/module_weights.h"
#include "m2sa/models/sam/builders.h"
#include "m2sa/nn/init.h"
#include "test_util.h"

namespace m2sa {
namespace {

using Layout = std::map<std::string, std::vector<int64_t>>;

Layout model_layout(const sam::SamConfig& config, std::vector<std::string>* order = nullptr) {
  nn::ShapeOnlyScope shape_only;
  sam::Sam model = sam::build_sam(config);
  Layout out;
  for (const auto& [name, t] : module_state(*model)) {
    EXPECT_TRUE(t.is_meta()) << name << " was allocated on " << t.device() << " inside a ShapeOnlyScope";
    out[name] = t.sizes().vec();
    if (order) order->push_back(name);
  }
  return out;
}

// Entries of a *_keys.json under `prefix`, with the prefix stripped.
Layout file_layout(const json& j, const std::string& prefix, std::vector<std::string>* order = nullptr) {
  Layout out;
  for (const json& k : j.at("keys")) {
    const std::string name = k.at("name").get<std::string>();
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    out[name.substr(prefix.size())] = k.at("shape").get<std::vector<int64_t>>();
    if (order) order->push_back(name.substr(prefix.size()));
  }
  return out;
}

void expect_same_layout(const Layout& model, const Layout& reference, const std::string& what) {
  for (const auto& [name, shape] : reference) {
    auto it = model.find(name);
    if (it == model.end()) {
      ADD_FAILURE() << what << ": missing in the model: " << name;
      continue;
    }
    EXPECT_EQ(it->second, shape) << what << ": shape of " << name;
  }
  for (const auto& [name, shape] : model)
    if (!reference.count(name)) ADD_FAILURE() << what << ": not in the reference: " << name;
}

int64_t numel_of(const Layout& l) {
  int64_t n = 0;
  for (const auto& [name, shape] : l) {
    int64_t e = 1;
    for (int64_t d : shape) e *= d;
    n += e;
  }
  return n;
}

TEST(SamKeys, VitHShapeOnlyEqualsReferenceStateDict) {
  const json ref = read_json_file(test::fixture("sam_vit_h_keys.json"));
  std::vector<std::string> model_order, ref_order;
  const Layout model = model_layout(sam::SamConfig::vit_h(), &model_order);
  const Layout reference = file_layout(ref, "", &ref_order);
  expect_same_layout(model, reference, "SAM ViT-H");
  EXPECT_EQ(model.size(), ref.at("num_tensors").get<size_t>());
  EXPECT_EQ(model.size(), 594u);
  EXPECT_EQ(numel_of(model), ref.at("num_elements").get<int64_t>());
  // Same state_dict order too (own parameters, buffers, then children in registration order).
  EXPECT_EQ(model_order, ref_order);
}

TEST(SamKeys, M2saVisualModelEqualsVitHWithCompressVit) {
  for (const char* file : {"m2sa_7b_keys.json", "m2sa_13b_keys.json"}) {
    SCOPED_TRACE(file);
    const json ref = read_json_file(test::fixture(file));
    const Layout reference = file_layout(ref, "model.visual_model.");
    const Layout model = model_layout(sam::SamConfig::m2sa_vit_h());
    expect_same_layout(model, reference, file);
    EXPECT_EQ(model.size(), 600u);  // 594 + compress_vit.{0,1,3}.{weight,bias}
    EXPECT_EQ(model.at("mask_decoder.compress_vit.0.weight"), (std::vector<int64_t>{256, 1280, 3, 3}));
  }
}

// The other presets follow build_sam.py; spot-check the sizes that differ.
TEST(SamKeys, VitBAndVitLPresets) {
  const Layout b = model_layout(sam::SamConfig::vit_b());
  EXPECT_EQ(b.at("image_encoder.blocks.11.mlp.lin1.weight"), (std::vector<int64_t>{3072, 768}));
  EXPECT_EQ(b.at("image_encoder.blocks.2.attn.rel_pos_h"), (std::vector<int64_t>{127, 64}));  // global
  EXPECT_EQ(b.at("image_encoder.blocks.3.attn.rel_pos_h"), (std::vector<int64_t>{27, 64}));   // window 14
  EXPECT_FALSE(b.count("image_encoder.blocks.12.norm1.weight"));
  const Layout l = model_layout(sam::SamConfig::vit_l());
  EXPECT_EQ(l.at("image_encoder.blocks.23.attn.qkv.weight"), (std::vector<int64_t>{3072, 1024}));
  EXPECT_EQ(l.at("image_encoder.blocks.5.attn.rel_pos_w"), (std::vector<int64_t>{127, 64}));
  EXPECT_EQ(l.at("image_encoder.neck.0.weight"), (std::vector<int64_t>{256, 1024, 1, 1}));
}

}  // namespace
}  // namespace m2sa
