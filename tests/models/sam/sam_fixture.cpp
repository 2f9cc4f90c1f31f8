#include "sam_fixture.h"

#include <gtest/gtest.h>

#include "m2sa/core/error.h"
#include "m2sa/models/sam/builders.h"
#include "test_util.h"

namespace m2sa::test {

namespace {
std::pair<int64_t, int64_t> pair_of(const json& v, const std::string& what) {
  if (!v.is_array() || v.size() != 2 || !v[0].is_number_integer() || !v[1].is_number_integer())
    fail(what, ": expected [h, w], got ", v.dump());
  return {v[0].get<int64_t>(), v[1].get<int64_t>()};
}
}  // namespace

sam::SamConfig sam_config_from_sidecar(const json& c, const std::string& where) {
  const json& ie = c.at("image_encoder");
  const json& pe = c.at("prompt_encoder");
  const json& md = c.at("mask_decoder");
  const json& tr = md.at("transformer");
  const int64_t img = ie.at("img_size").get<int64_t>(), patch = ie.at("patch_size").get<int64_t>();
  const int64_t out_chans = ie.at("out_chans").get<int64_t>(), grid = img / patch;
  // Consistency of the descriptive fields with what SamConfig derives.
  M2SA_CHECK(ie.value("in_chans", 3) == 3, where, ": in_chans must be 3");
  M2SA_CHECK(pe.at("embed_dim").get<int64_t>() == out_chans, where, ": prompt_encoder.embed_dim != out_chans");
  M2SA_CHECK(pair_of(pe.at("image_embedding_size"), where) == std::make_pair(grid, grid), where,
             ": prompt_encoder.image_embedding_size is not img_size / patch_size");
  M2SA_CHECK(pair_of(pe.at("input_image_size"), where) == std::make_pair(img, img), where,
             ": prompt_encoder.input_image_size is not [img_size, img_size]");
  M2SA_CHECK(md.at("transformer_dim").get<int64_t>() == out_chans, where, ": transformer_dim != out_chans");
  M2SA_CHECK(tr.at("embedding_dim").get<int64_t>() == out_chans, where, ": transformer.embedding_dim != out_chans");
  M2SA_CHECK(tr.value("type", std::string("TwoWayTransformer")) == "TwoWayTransformer", where,
             ": unsupported transformer type");
  const json j = {
      {"image_encoder",
       {{"img_size", img},
        {"patch_size", patch},
        {"embed_dim", ie.at("embed_dim")},
        {"depth", ie.at("depth")},
        {"num_heads", ie.at("num_heads")},
        {"mlp_ratio", ie.at("mlp_ratio")},
        {"out_chans", out_chans},
        {"qkv_bias", ie.at("qkv_bias")},
        {"use_abs_pos", ie.at("use_abs_pos")},
        {"use_rel_pos", ie.at("use_rel_pos")},
        {"window_size", ie.at("window_size")},
        {"global_attn_indexes", ie.at("global_attn_indexes")},
        {"early_layer", -1}}},
      {"prompt_encoder", {{"mask_in_chans", pe.at("mask_in_chans")}}},
      {"mask_decoder",
       {{"transformer_depth", tr.at("depth")},
        {"transformer_mlp_dim", tr.at("mlp_dim")},
        {"transformer_num_heads", tr.at("num_heads")},
        {"attention_downsample_rate", tr.at("attention_downsample_rate")},
        {"num_multimask_outputs", md.at("num_multimask_outputs")},
        {"iou_head_depth", md.at("iou_head_depth")},
        {"iou_head_hidden_dim", md.at("iou_head_hidden_dim")},
        {"compress_vit", false}}}};
  return sam::SamConfig::from_json(JsonReader(j, where + " (adapted)"));
}

KeyRules sam_fixture_rules() {
  KeyRules r = key_rules::identity("sam fixture weights");
  for (const char* p : {"image_encoder.", "prompt_encoder.", "mask_decoder."}) r.rename.push_back({p, p});
  r.ignore_unmatched = true;
  return r;
}

SamFixture::SamFixture() {
  const auto sidecar_path = fixture("sam_tiny.json");
  sidecar_ = read_json_file(sidecar_path);
  config_ = sam_config_from_sidecar(sidecar_.at("config"), sidecar_path.string());
  store_ = WeightStore::open(fixture("sam_tiny.safetensors"));
}

at::Tensor SamFixture::tensor(const std::string& name) const {
  if (!store_.contains(name)) fail("sam_tiny.safetensors has no tensor '", name, "'");
  return store_.load(name).to(device(), /*non_blocking=*/false, /*copy=*/true);
}

double SamFixture::atol(const std::string& output) const {
  const json& t = sidecar_.at("tensors");
  if (!t.contains(output) || !t[output].contains("atol_fp32")) fail("sam_tiny.json: no atol_fp32 for '", output, "'");
  return t[output]["atol_fp32"].get<double>();
}

std::vector<std::string> SamFixture::names_of_kind(const std::string& kind) const {
  std::vector<std::string> out;
  for (const auto& [name, info] : sidecar_.at("tensors").items())
    if (info.value("kind", "") == kind) out.push_back(name);
  return out;
}

std::pair<int64_t, int64_t> SamFixture::input_size() const {
  return pair_of(sidecar_.at("config").at("input_size"), "sam_tiny.json config.input_size");
}

std::pair<int64_t, int64_t> SamFixture::original_size() const {
  return pair_of(sidecar_.at("config").at("original_size"), "sam_tiny.json config.original_size");
}

LoadReport SamFixture::load_into(sam::SamImpl& model) const {
  LoadOptions options;
  options.rules = sam_fixture_rules();
  options.allow_missing = {"mask_decoder.compress_vit."};
  return load_weights(model, store_, options);
}

sam::Sam SamFixture::load_model(const sam::SamConfig& config) const {
  sam::Sam model = sam::build_sam(config);
  load_into(*model);
  model->to(device());
  return model;
}

}  // namespace m2sa::test
