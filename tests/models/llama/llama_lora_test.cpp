// LoRA on the LLaMA decoder: the reference's adapter placement and the PEFT / merged checkpoint layouts.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include "m2sa/core/error.h"
#include "m2sa/io/checkpoint_keys.h"
#include "m2sa/io/module_weights.h"
#include "m2sa/io/safetensors.h"
#include "m2sa/models/llama/llama_model.h"
#include "m2sa/nn/init.h"
#include "m2sa/nn/lora.h"
#include "test_util.h"

namespace m2sa::llama {
namespace {

LlamaConfig lora_tiny_config() {
  LlamaConfig c;
  c.vocab_size = 61;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.max_position_embeddings = 32;
  return c;
}

int64_t numel(const NamedTensors& v) {
  int64_t n = 0;
  for (const auto& kv : v) n += kv.second.numel();
  return n;
}

TEST(LlamaLora, ReferencePlacementAndParameterCounts) {
  // M2SA.md 1.8: 64 adapted modules and 4,194,304 LoRA parameters for 7B; 6,553,600 for 13B.
  for (const auto& [config, modules, params] : {std::tuple{LlamaConfig::llama_7b(), 64, int64_t{4194304}},
                                                std::tuple{LlamaConfig::llama2_13b(), 80, int64_t{6553600}}}) {
    nn::ShapeOnlyScope shape_only;
    LlamaForCausalLM m(config);
    const auto names = nn::apply_lora(*m, nn::LoraConfig{});
    EXPECT_EQ(static_cast<int>(names.size()), modules);
    EXPECT_EQ(names.front(), "model.layers.0.self_attn.q_proj");
    EXPECT_EQ(numel(nn::lora_state(*m)), params);
  }
}

struct Pair {
  LlamaForCausalLM model{nullptr};
  at::Tensor tokens, logits;
};

Pair trained_lora_model() {
  at::manual_seed(3);
  Pair p;
  p.model = LlamaForCausalLM(lora_tiny_config());
  nn::apply_lora(*p.model, nn::LoraConfig{});
  at::NoGradGuard g;
  for (auto& [name, t] : nn::lora_state(*p.model)) t.normal_(0.0, 0.3);  // as if trained
  p.model->eval();
  p.tokens = at::randint(0, 61, {2, 9}, at::kLong);
  p.logits = p.model->forward_ids(p.tokens).logits;
  return p;
}

TEST(LlamaLora, PeftLayoutRoundTripsThroughPeftKeyRules) {
  Pair p = trained_lora_model();
  test::TempDir dir;
  write_safetensors(dir / "adapter_model.safetensors", nn::peft_state(*p.model));
  const WeightStore store = WeightStore::open(dir / "adapter_model.safetensors");
  EXPECT_TRUE(store.contains("base_model.model.model.layers.1.self_attn.v_proj.lora_B.default.weight"));
  EXPECT_TRUE(store.contains("base_model.model.lm_head.weight"));

  LlamaForCausalLM fresh(lora_tiny_config());
  nn::apply_lora(*fresh, nn::LoraConfig{});
  const LoadReport r = fresh->load(store, key_rules::peft_m2sa());
  EXPECT_EQ(r.loaded.size(), module_state(*fresh).size());
  fresh->eval();
  at::NoGradGuard g;
  EXPECT_TRUE(test::AllClose(fresh->forward_ids(p.tokens).logits, p.logits, 0.0, "PEFT reload"));
  // Merged on load (M2SA.md "Checkpoints in"): the same outputs within 1e-5.
  nn::merge_all_lora(*fresh);
  EXPECT_TRUE(test::AllClose(fresh->forward_ids(p.tokens).logits, p.logits, 1e-5, "merged after load"));

  // A model without adapters refuses the un-merged file and names the adapter keys.
  LlamaForCausalLM plain(lora_tiny_config());
  try {
    plain->load(store, key_rules::peft_m2sa());
    ADD_FAILURE() << "loading LoRA keys into a model without adapters should fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("lora_A.default.weight"), std::string::npos) << e.what();
  }
}

TEST(LlamaLora, MergedLayoutDropsAdaptersAndLoadsIntoAPlainModel) {
  Pair p = trained_lora_model();
  test::TempDir dir;
  write_safetensors(dir / "model.safetensors", nn::merged_state(*p.model));
  const WeightStore store = WeightStore::open(dir.path());
  for (const auto& info : store.tensors()) EXPECT_FALSE(nn::is_lora_key(info.name)) << info.name;
  EXPECT_EQ(store.tensors().size(), module_state(*LlamaForCausalLM(lora_tiny_config())).size());

  LlamaForCausalLM plain(lora_tiny_config());
  plain->load(store, key_rules::hf_m2sa());
  plain->eval();
  at::NoGradGuard g;
  EXPECT_TRUE(test::AllClose(plain->forward_ids(p.tokens).logits, p.logits, 1e-5, "merged checkpoint"));
}

TEST(LlamaLora, FreshAdaptersChangeNothingAndTrainOnlyLora) {
  at::manual_seed(11);
  LlamaForCausalLM m(lora_tiny_config());
  m->eval();
  const at::Tensor tokens = at::randint(0, 61, {1, 7}, at::kLong);
  at::Tensor before;
  {
    at::NoGradGuard g;
    before = m->forward_ids(tokens).logits;
  }
  nn::apply_lora(*m, nn::LoraConfig{});
  {
    at::NoGradGuard g;
    EXPECT_TRUE(test::AllClose(m->forward_ids(tokens).logits, before, 0.0, "B = 0"));
  }
  nn::mark_only_lora_trainable(*m);
  m->train();
  m->forward_ids(tokens).logits.pow(2).mean().backward();
  for (const auto& p : m->named_parameters()) {
    if (nn::is_lora_key(p.key())) EXPECT_TRUE(p.value().grad().defined()) << p.key();
    else EXPECT_FALSE(p.value().grad().defined()) << p.key();
  }
}

}  // namespace
}  // namespace m2sa::llama
