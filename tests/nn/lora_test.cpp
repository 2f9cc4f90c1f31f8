#include "m2sa/nn/lora.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <functional>

#include "m2sa/core/error.h"
#include "m2sa/io/module_weights.h"
#include "m2sa/nn/init.h"
#include "m2sa/nn/layers.h"
#include "test_util.h"

namespace m2sa::nn {
namespace {

#define EXPECT_ERROR(stmt, text)                                                        \
  do {                                                                                  \
    const std::string _msg = test::m2sa_error_of([&] { stmt; });                                   \
    EXPECT_NE(_msg.find(text), std::string::npos) << "error was: \"" << _msg << "\""; \
  } while (0)

TEST(LoraLinear, PeftKeysShapesAndInit) {
  Linear l(12, 20);
  l->enable_lora(4, 8.0, 0.0);
  std::vector<std::string> names;
  for (const auto& [name, t] : module_state(*l)) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"weight", "bias", "lora_A.default.weight", "lora_B.default.weight"}));
  EXPECT_EQ(l->lora_A.sizes(), (std::vector<int64_t>{4, 12}));
  EXPECT_EQ(l->lora_B.sizes(), (std::vector<int64_t>{20, 4}));
  EXPECT_EQ(l->lora_B.abs().max().item<float>(), 0.0f);                      // B = 0
  EXPECT_LE(l->lora_A.abs().max().item<float>(), 1.0 / std::sqrt(12.0));     // kaiming-uniform(a=sqrt(5))
  EXPECT_GT(l->lora_A.abs().max().item<float>(), 0.5 / std::sqrt(12.0));
  EXPECT_DOUBLE_EQ(l->lora_scaling, 2.0);
  EXPECT_TRUE(l->lora_A.requires_grad() && l->lora_B.requires_grad());
}

TEST(LoraLinear, ZeroBChangesNothing) {
  Linear l(16, 8);
  const at::Tensor x = at::randn({3, 5, 16});
  const at::Tensor before = l->forward(x).detach();
  l->enable_lora(8, 16.0, 0.05);
  l->eval();
  EXPECT_TRUE(test::AllClose(l->forward(x), before, 0.0, "eval"));
  l->train();  // the dropout only touches the adapter's input, which B = 0 annihilates
  EXPECT_TRUE(test::AllClose(l->forward(x), before, 0.0, "train"));
}

TEST(LoraLinear, ForwardIsBasePlusScaledLowRankUpdate) {
  Linear l(16, 8);
  l->enable_lora(4, 16.0, 0.0);
  {
    at::NoGradGuard g;
    l->lora_B.normal_();
  }
  const at::Tensor x = at::randn({2, 16});
  const at::Tensor expected = x.matmul(l->weight.t()) + l->bias + x.matmul(l->lora_A.t()).matmul(l->lora_B.t()) * 4.0;
  EXPECT_TRUE(test::AllClose(l->forward(x), expected, 1e-5, "x W^T + b + x A^T B^T alpha/r"));
}

TEST(LoraLinear, MergeEqualsUnmergedAndUnmergeRestores) {
  Linear l(32, 24);
  l->enable_lora(8, 16.0, 0.05);
  {
    at::NoGradGuard g;
    l->lora_B.normal_(0.0, 0.5);
  }
  l->eval();
  at::NoGradGuard g;
  const at::Tensor x = at::randn({4, 7, 32});
  const at::Tensor base = l->weight.clone();
  const at::Tensor unmerged = l->forward(x);
  l->merge_lora();
  EXPECT_TRUE(l->lora_merged());
  EXPECT_TRUE(test::AllClose(l->forward(x), unmerged, 1e-5, "merged vs unmerged"));
  EXPECT_GT(test::max_abs_diff(l->weight, base), 1e-3);
  l->unmerge_lora();
  EXPECT_TRUE(test::AllClose(l->weight, base, 1e-6, "weight after unmerge"));
  EXPECT_TRUE(test::AllClose(l->forward(x), unmerged, 1e-5, "unmerged again"));
}

TEST(LoraLinear, OnlyAdapterGetsGradientsWithFrozenBase) {
  Linear l(10, 6);
  l->enable_lora(2, 4.0, 0.1);
  l->weight.set_requires_grad(false);
  l->bias.set_requires_grad(false);
  {
    at::NoGradGuard g;
    l->lora_B.normal_();
  }
  l->train();
  l->forward(at::randn({5, 10})).pow(2).sum().backward();
  EXPECT_FALSE(l->weight.grad().defined());
  EXPECT_FALSE(l->bias.grad().defined());
  ASSERT_TRUE(l->lora_A.grad().defined());
  ASSERT_TRUE(l->lora_B.grad().defined());
  EXPECT_GT(l->lora_A.grad().abs().max().item<float>(), 0.0f);
  EXPECT_GT(l->lora_B.grad().abs().max().item<float>(), 0.0f);
}

TEST(LoraLinear, Bf16BaseWithFp32Adapter) {
  Linear l(16, 8);
  l->to(at::kBFloat16);
  l->enable_lora(4, 8.0, 0.0);
  EXPECT_EQ(l->lora_A.scalar_type(), at::kFloat);  // PEFT creates the adapter in fp32
  at::NoGradGuard g;
  l->lora_B.normal_();
  const at::Tensor y = l->forward(at::randn({3, 16}, at::kBFloat16));
  EXPECT_EQ(y.scalar_type(), at::kBFloat16);
  l->merge_lora();
  EXPECT_EQ(l->weight.scalar_type(), at::kBFloat16);
}

TEST(LoraLinear, ShapeOnlyAdapterStaysOnMeta) {
  ShapeOnlyScope scope;
  Linear l(4096, 4096, false);
  l->enable_lora(8, 16.0, 0.05);
  EXPECT_TRUE(l->lora_A.is_meta());
  EXPECT_TRUE(l->lora_B.is_meta());
}

TEST(LoraLinear, BadUseGivesClearErrors) {
  Linear l(4, 4);
  EXPECT_ERROR(l->merge_lora(), "has no LoRA adapter");
  EXPECT_ERROR(l->enable_lora(0, 16.0, 0.0), "rank r must be >= 1, got 0");
  EXPECT_ERROR(l->enable_lora(8, 16.0, 1.0), "dropout must be in [0, 1), got 1");
  EXPECT_ERROR(l->enable_lora(8, -1.0, 0.0), "alpha must be a positive number");
  l->enable_lora(2, 4.0, 0.0);
  EXPECT_ERROR(l->enable_lora(2, 4.0, 0.0), "already enabled");
  EXPECT_ERROR(l->unmerge_lora(), "not merged");
  l->merge_lora();
  EXPECT_ERROR(l->merge_lora(), "already merged");
}

// A module tree with the names of the M2SA composition (only what matters for the name rule).
struct Node : torch::nn::Module {
  Node() : torch::nn::Module("Node") {}
  std::shared_ptr<Node> child(const std::string& name) { return register_module(name, std::make_shared<Node>()); }
  void linear(const std::string& name) { register_module(name, Linear(8, 8, false)); }
};

std::shared_ptr<Node> m2sa_like_tree() {
  auto root = std::make_shared<Node>();
  auto model = root->child("model");
  auto layers = model->child("layers");
  for (const char* i : {"0", "1"}) {
    auto layer = layers->child(i);
    auto attn = layer->child("self_attn");
    for (const char* p : {"q_proj", "k_proj", "v_proj", "o_proj"}) attn->linear(p);
    auto mlp = layer->child("mlp");
    for (const char* p : {"gate_proj", "up_proj", "down_proj"}) mlp->linear(p);
  }
  // SAM's decoder attention and CLIP also have q_proj / v_proj: they must stay untouched.
  auto sam_attn = model->child("visual_model")->child("mask_decoder")->child("transformer")->child("self_attn");
  for (const char* p : {"q_proj", "k_proj", "v_proj", "out_proj"}) sam_attn->linear(p);
  auto clip_attn = model->child("vision_tower")->child("vision_tower")->child("encoder")->child("self_attn");
  for (const char* p : {"q_proj", "v_proj"}) clip_attn->linear(p);
  model->linear("mm_projector");
  model->child("text_hidden_fcs")->child("0")->linear("q_proj_like");  // a target substring inside an exclusion
  root->linear("lm_head");
  return root;
}

TEST(LoraRule, TargetsOnlyTheLlmAttentionProjections) {
  auto root = m2sa_like_tree();
  const auto names = apply_lora(*root, LoraConfig{});
  EXPECT_EQ(names, (std::vector<std::string>{"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj",
                                             "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"}));
  EXPECT_EQ(lora_layer_names(*root), names);
  // PEFT's mark_only_lora_as_trainable.
  EXPECT_EQ(mark_only_lora_trainable(*root), 8);
  for (const auto& p : root->named_parameters()) EXPECT_EQ(p.value().requires_grad(), is_lora_key(p.key())) << p.key();
}

TEST(LoraRule, NameMatchingAndConfig) {
  const LoraConfig c;
  EXPECT_TRUE(lora_name_matches("model.layers.31.self_attn.q_proj", c));
  EXPECT_TRUE(lora_name_matches("base_model.model.model.layers.0.self_attn.v_proj", c));
  EXPECT_FALSE(lora_name_matches("model.layers.0.self_attn.k_proj", c));
  EXPECT_FALSE(lora_name_matches("model.visual_model.mask_decoder.transformer.layers.0.self_attn.q_proj", c));
  EXPECT_FALSE(lora_name_matches("model.vision_tower.vision_tower.vision_model.encoder.layers.0.self_attn.v_proj", c));
  EXPECT_FALSE(lora_name_matches("model.text_hidden_fcs.0.0", c));
  EXPECT_FALSE(lora_name_matches("model.mm_projector", c));

  LoraConfig wide;
  wide.target_modules = {"proj"};
  auto root = m2sa_like_tree();
  EXPECT_EQ(apply_lora(*root, wide).size(), 2u * 7u);  // every LLaMA projection, still nothing excluded
  LoraConfig none;
  none.target_modules = {"nothing_like_this"};
  EXPECT_ERROR(apply_lora(*m2sa_like_tree(), none), "no linear layer matches the target modules [nothing_like_this]");
  auto twice = m2sa_like_tree();
  apply_lora(*twice, c);
  EXPECT_ERROR(apply_lora(*twice, c), "'model.layers.0.self_attn.q_proj' already has a LoRA adapter");

  const json j = json::parse(R"({"r": 16, "lora_alpha": 32, "lora_dropout": 0.1, "target_modules": ["q_proj"]})");
  const LoraConfig read = LoraConfig::from_json(JsonReader(j, "lora.json"));
  EXPECT_EQ(read.r, 16);
  EXPECT_DOUBLE_EQ(read.alpha, 32.0);
  EXPECT_EQ(read.exclude, c.exclude);
  EXPECT_EQ(LoraConfig::from_json(JsonReader(read.to_json(), "lora.json")).to_json(), read.to_json());
  EXPECT_ERROR(LoraConfig::from_json(JsonReader(json{{"rank", 8}}, "lora.json")), "rank");
  EXPECT_ERROR(LoraConfig::from_json(JsonReader(json{{"r", 0}}, "lora.json")), "lora.json: r must be >= 1, got 0");
  EXPECT_ERROR(LoraConfig::from_json(JsonReader(json{{"lora_dropout", 1.5}}, "lora.json")), "lora_dropout must be in [0, 1)");
}

TEST(LoraRule, MergeAllAndStates) {
  auto root = m2sa_like_tree();
  apply_lora(*root, LoraConfig{});
  {
    at::NoGradGuard g;
    for (auto& [name, t] : lora_state(*root)) t.normal_();
  }
  EXPECT_EQ(lora_state(*root).size(), 8u);
  auto clone_all = [](NamedTensors v) {
    for (auto& kv : v) kv.second = kv.second.detach().clone();  // the states may alias live parameters
    return v;
  };
  const auto merged_view = clone_all(merged_state(*root));
  for (const auto& [name, t] : merged_view) EXPECT_FALSE(is_lora_key(name)) << name;
  EXPECT_EQ(merged_view.size(), module_state(*root).size() - 8);
  const auto peft = clone_all(peft_state(*root));
  EXPECT_EQ(peft.size(), module_state(*root).size());
  for (const auto& [name, t] : peft) EXPECT_EQ(name.rfind("base_model.model.", 0), 0u) << name;

  EXPECT_EQ(merge_all_lora(*root).size(), 4u);
  EXPECT_TRUE(merge_all_lora(*root).empty());  // nothing left to merge
  // After merging in place, the merged layout is the same; the PEFT layout still holds the un-merged base.
  const auto merged_after = merged_state(*root);
  ASSERT_EQ(merged_after.size(), merged_view.size());
  for (std::size_t i = 0; i < merged_view.size(); ++i)
    EXPECT_TRUE(test::AllClose(merged_after[i].second, merged_view[i].second, 1e-6, merged_view[i].first));
  const auto peft_after = peft_state(*root);
  for (std::size_t i = 0; i < peft.size(); ++i)
    EXPECT_TRUE(test::AllClose(peft_after[i].second, peft[i].second, 1e-6, peft[i].first));
  EXPECT_EQ(unmerge_all_lora(*root).size(), 4u);
}

}  // namespace
}  // namespace m2sa::nn
