// The full-size M2SA parameter layouts, built shape-only (meta device, nothing allocated), against the reference key
// lists (m2sa_{7b,13b}_keys.json: the merged HF checkpoint; clip_vit_l14_keys.json: the CLIP tower), the trainable
// selection of spec 1.8, and `m2sa inspect --config`.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "m2sa/io/checkpoint_keys.h"
#include "m2sa/io/module_weights.h"
#include "m2sa/models/m2sa/m2sa_trainable.h"
#include "m2sa/models/model_inventory.h"
#include "m2sa/nn/init.h"
#include "m2sa/nn/lora.h"
#include "models/model_fixture.h"
#include "test_util.h"

namespace m2sa {
namespace {

using Layout = std::map<std::string, std::vector<int64_t>>;
using m2sa_model::M2SAConfig;

void expect_same(const Layout& model, const Layout& reference, const std::string& what) {
  int missing = 0, extra = 0;
  for (const auto& [name, shape] : reference) {
    auto it = model.find(name);
    if (it == model.end()) {
      if (++missing <= 10) ADD_FAILURE() << what << ": missing in the model: " << name;
      continue;
    }
    EXPECT_EQ(it->second, shape) << what << ": shape of " << name;
  }
  for (const auto& [name, shape] : model)
    if (!reference.count(name) && ++extra <= 10) ADD_FAILURE() << what << ": not in the reference: " << name;
  EXPECT_EQ(missing, 0);
  EXPECT_EQ(extra, 0);
}

void check_layout(const std::string& config_file, const std::string& keys_file) {
  const std::vector<TensorInfo> inv = model_inventory(test::repo_root() / "configs" / config_file);
  Layout hf, tower;
  const std::string clip = key_rules::kClip;
  for (const auto& t : inv) {
    if (t.name.compare(0, clip.size(), clip) == 0)
      tower[t.name.substr(clip.size())] = t.shape;
    else
      hf[t.name] = t.shape;
  }
  const Layout ref = test::key_list(keys_file);
  expect_same(hf, ref, config_file + " vs " + keys_file);
  EXPECT_EQ(hf.size(), read_json_file(test::key_file(keys_file)).at("num_tensors").get<size_t>());
  expect_same(tower, test::key_list("clip_vit_l14_keys.json"), config_file + " vision tower vs clip_vit_l14_keys.json");
}

TEST(M2SAKeys, Inventory7BEqualsMergedCheckpointAndClip) { check_layout("m2sa-7b.json", "m2sa_7b_keys.json"); }
TEST(M2SAKeys, Inventory13BEqualsMergedCheckpointAndClip) { check_layout("m2sa-13b.json", "m2sa_13b_keys.json"); }

TEST(M2SAKeys, ShapeOnlyModelAllocatesNothing) {
  nn::ShapeOnlyScope shape_only;
  m2sa_model::M2SAForCausalLM model(M2SAConfig::m2sa_7b());
  int64_t count = 0;
  for (const auto& [name, t] : module_state(*model)) {
    ASSERT_TRUE(t.is_meta()) << name << " was allocated on " << t.device();
    ++count;
  }
  EXPECT_EQ(count, 897 + 391);
}

TEST(M2SAKeys, InspectCliListsTheModel) {
  const auto r = test::run_cli({"inspect", "--config", (test::repo_root() / "configs" / "m2sa-7b.json").string(), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json j = json::parse(r.output);
  EXPECT_EQ(j.at("tensors").size(), 897u + 391u);
  bool found = false;
  for (const auto& t : j.at("tensors"))
    if (t.at("name") == "model.text_hidden_fcs.0.2.weight") {
      found = true;
      EXPECT_EQ(t.at("shape"), json({256, 4096}));
    }
  EXPECT_TRUE(found);
  const auto bad = test::run_cli({"inspect", "--config", (test::repo_root() / "configs" / "tokenizer" / "README.md").string()});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("invalid JSON"), std::string::npos) << bad.output;
}

// Spec 1.8: 64 LoRA modules with 4,194,304 parameters (7B), 6,553,600 (13B); embed + lm_head 2 x 32003 x H;
// text_hidden_fcs 17.8 M; mask decoder incl. compress_vit (3.54 M).
void check_trainable_counts(const M2SAConfig& c, int64_t lora_params, int64_t lora_modules) {
  nn::ShapeOnlyScope shape_only;
  m2sa_model::M2SAForCausalLM model(c);
  const auto names = m2sa_model::set_trainable(*model, m2sa_model::TrainMode::kLora);
  EXPECT_EQ(static_cast<int64_t>(nn::lora_layer_names(*model).size()), lora_modules);
  std::map<std::string, int64_t> groups;
  for (const auto& item : model->named_parameters()) {
    if (!item.value().requires_grad()) continue;
    const std::string& n = item.key();
    const std::string g = nn::is_lora_key(n) ? "lora"
                          : n.find("compress_vit") != std::string::npos ? "compress_vit"
                          : n.find("mask_decoder") != std::string::npos ? "mask_decoder"
                          : n.find("text_hidden_fcs") != std::string::npos ? "text_hidden_fcs"
                          : n.find("embed_tokens") != std::string::npos ? "embed_tokens"
                          : n.find("lm_head") != std::string::npos ? "lm_head" : "other: " + n;
    groups[g] += item.value().numel();
  }
  const int64_t h = c.hidden_size();
  EXPECT_EQ(groups["lora"], lora_params);
  EXPECT_EQ(groups["embed_tokens"], 32003 * h);
  EXPECT_EQ(groups["lm_head"], 32003 * h);
  EXPECT_EQ(groups["text_hidden_fcs"], h * h + h + 256 * h + 256);
  EXPECT_EQ(groups["compress_vit"], 256 * 1280 * 9 + 256 + 2 * 256 + 256 * 256 * 9 + 256);  // 3,539,968
  EXPECT_GT(groups["mask_decoder"], 3900000);  // "~4.1 M" (spec 1.8)
  EXPECT_LT(groups["mask_decoder"], 4200000);
  EXPECT_EQ(groups.size(), 6u) << "unexpected trainable group";
  int64_t total = 0;
  for (const auto& [g, n] : groups) total += n;
  EXPECT_EQ(total, m2sa_model::trainable_numel(*model));
  EXPECT_EQ(names.size(), m2sa_model::trainable_names(*model).size());
}

TEST(M2SATrainable, SevenBCountsMatchSpec) { check_trainable_counts(M2SAConfig::m2sa_7b(), 4194304, 64); }
TEST(M2SATrainable, ThirteenBCountsMatchSpec) { check_trainable_counts(M2SAConfig::m2sa_13b(), 6553600, 80); }

}  // namespace
}  // namespace m2sa
