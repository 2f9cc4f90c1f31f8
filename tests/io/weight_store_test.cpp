#include "m2sa/io/weight_store.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "m2sa/core/error.h"
#include "m2sa/core/json_reader.h"
#include "m2sa/io/module_weights.h"
#include "m2sa/io/safetensors.h"
#include "m2sa/nn/init.h"
#include "m2sa/nn/layers.h"
#include "test_util.h"

namespace m2sa {
namespace {

TEST(WeightStore, ShardedFolder) {
  test::TempDir dir;
  write_safetensors(dir / "model-00001-of-00002.safetensors", {{"a", at::ones({2})}, {"b", at::zeros({3})}});
  write_safetensors(dir / "model-00002-of-00002.safetensors", {{"c", at::full({1}, 7.0)}});
  write_json_file(dir / "model.safetensors.index.json",
                  {{"metadata", {{"total_size", 24}}},
                   {"weight_map", {{"a", "model-00001-of-00002.safetensors"}, {"b", "model-00001-of-00002.safetensors"},
                                   {"c", "model-00002-of-00002.safetensors"}}}});
  WeightStore ws = WeightStore::open(dir.path());
  EXPECT_EQ(ws.tensors().size(), 3u);
  EXPECT_EQ(ws.load("c").item<float>(), 7.0f);
  EXPECT_NE(ws.source_of("c").find("00002"), std::string::npos);
}

TEST(WeightStore, BrokenIndexGivesClearErrors) {
  test::TempDir dir;
  write_safetensors(dir / "s1.safetensors", {{"a", at::ones({2})}});
  write_json_file(dir / "model.safetensors.index.json", {{"weight_map", {{"a", "s1.safetensors"}, {"z", "s2.safetensors"}}}});
  EXPECT_NE(test::m2sa_error_of([&] { WeightStore::open(dir.path()); }).find("s2.safetensors does not exist"), std::string::npos);
  write_json_file(dir / "model.safetensors.index.json", {{"weight_map", {{"q", "s1.safetensors"}}}});
  EXPECT_NE(test::m2sa_error_of([&] { WeightStore::open(dir.path()); }).find("does not contain it"), std::string::npos);
  write_json_file(dir / "model.safetensors.index.json", {{"weights", 1}});
  EXPECT_NE(test::m2sa_error_of([&] { WeightStore::open(dir.path()); }).find("weight_map"), std::string::npos);
  test::write_bytes(dir / "model.safetensors.index.json", "{ broken");
  EXPECT_NE(test::m2sa_error_of([&] { WeightStore::open(dir.path()); }).find("invalid JSON"), std::string::npos);
  write_json_file(dir / "model.safetensors.index.json", {{"weight_map", {{"a", "../../etc/passwd"}}}});
  EXPECT_NE(test::m2sa_error_of([&] { WeightStore::open(dir.path()); }).find("is not a file in this folder"), std::string::npos);
}

TEST(WeightStore, EmptyFolderAndMissingPath) {
  test::TempDir dir;
  EXPECT_NE(test::m2sa_error_of([&] { WeightStore::open(dir.path()); }).find("no weight file"), std::string::npos);
  EXPECT_NE(test::m2sa_error_of([&] { WeightStore::open(dir / "nope"); }).find("no such file"), std::string::npos);
}

struct Tiny : torch::nn::Module {
  Tiny() {
    fc = register_module("fc", nn::Linear(3, 2));
    norm = register_module("norm", nn::LayerNorm(2));
  }
  nn::Linear fc{nullptr};
  nn::LayerNorm norm{nullptr};
};

TEST(ModuleWeights, LoadReportsMissingUnexpectedAndMismatched) {
  Tiny m;
  auto good = WeightStore::from_tensors({{"fc.weight", at::ones({2, 3})}, {"fc.bias", at::zeros({2})},
                                         {"norm.weight", at::ones({2})}, {"norm.bias", at::zeros({2})}});
  LoadReport r = load_weights(m, good, {});
  EXPECT_EQ(r.loaded.size(), 4u);
  EXPECT_TRUE(at::equal(m.fc->weight, at::ones({2, 3})));

  auto missing = WeightStore::from_tensors({{"fc.weight", at::ones({2, 3})}, {"fc.bias", at::zeros({2})}}, "mem");
  std::string e = test::m2sa_error_of([&] { load_weights(m, missing, {}); });
  EXPECT_NE(e.find("missing from the checkpoint"), std::string::npos) << e;
  EXPECT_NE(e.find("norm.weight"), std::string::npos) << e;

  LoadOptions lenient;
  lenient.allow_missing = {"norm."};
  EXPECT_EQ(load_weights(m, missing, lenient).allowed_missing.size(), 2u);

  auto wrong = WeightStore::from_tensors({{"fc.weight", at::ones({3, 3})}, {"fc.bias", at::zeros({2})},
                                          {"norm.weight", at::ones({2})}, {"norm.bias", at::zeros({2})},
                                          {"extra", at::ones({1})}});
  e = test::m2sa_error_of([&] { load_weights(m, wrong, {}); });
  EXPECT_NE(e.find("fc.weight: checkpoint [3, 3] vs model [2, 3]"), std::string::npos) << e;
  EXPECT_NE(e.find("extra"), std::string::npos) << e;
  // A failed load leaves the module untouched.
  EXPECT_TRUE(at::equal(m.fc->weight, at::ones({2, 3})));
}

TEST(ModuleWeights, KeyRulesRenameAndIgnore) {
  Tiny m;
  LoadOptions opt;
  opt.rules = KeyRules{"test", {{"base.", ""}}, {"inv_freq"}, false};
  auto ws = WeightStore::from_tensors({{"base.fc.weight", at::ones({2, 3})}, {"base.fc.bias", at::zeros({2})},
                                       {"base.norm.weight", at::ones({2})}, {"base.norm.bias", at::zeros({2})},
                                       {"rotary_emb.inv_freq", at::ones({4})}});
  LoadReport r = load_weights(m, ws, opt);
  EXPECT_EQ(r.loaded.size(), 4u);
  EXPECT_EQ(r.ignored, 1u);
}

TEST(ModuleWeights, ShapeOnlyModulesAllocateNothing) {
  nn::ShapeOnlyScope scope;
  nn::Linear big(65536, 65536);  // 16 GiB in fp32 if it were real
  EXPECT_TRUE(big->weight.is_meta());
  auto state = module_state(*big);
  ASSERT_EQ(state.size(), 2u);
  EXPECT_EQ(state[0].first, "weight");
  EXPECT_EQ(state[0].second.sizes(), (std::vector<int64_t>{65536, 65536}));
}

}  // namespace
}  // namespace m2sa
