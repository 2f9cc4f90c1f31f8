// LLaMA against the llama_tiny fixture (Meta's reference model, HF weight layout) and the full-size key lists.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <iostream>
#include <regex>
#include <set>

#include "m2sa/io/module_weights.h"
#include "m2sa/models/llama/llama_model.h"
#include "m2sa/nn/init.h"
#include "models/model_fixture.h"
#include "test_util.h"

namespace m2sa::llama {
namespace {

struct LlamaFixture {
  test::ModelFixture fx{"llama_tiny"};
  LlamaConfig config =
      LlamaConfig::from_hf_config(fx.config().at("hf_llama_config"), "llama_tiny.json: config.hf_llama_config");
  LlamaForCausalLM model{nullptr};

  // fused: q/k/v and gate/up as one matmul each (the inference fast path, issue 15).
  explicit LlamaFixture(bool fused = false) {
    model = LlamaForCausalLM(config);
    const LoadReport report = model->load(fx.weights());
    EXPECT_TRUE(report.missing.empty() && report.unexpected.empty()) << report.summary();
    model->to(test::device());
    model->eval();
    for (auto& p : model->parameters()) p.set_requires_grad(false);
    if (fused) {
      EXPECT_EQ(model->fuse_projections(), 2 * config.num_hidden_layers);
    }
  }

  // "output." or "output.batch2." and the matching input.
  static std::string input_of(const std::string& set) { return set.empty() ? "input.tokens" : "input." + set + "tokens"; }
};

// Every output of one input set ("" or "batch2.") that this model computes, by fixture name.
std::map<std::string, at::Tensor> compute_outputs(const LlamaFixture& f, const std::string& set, bool full, bool incremental) {
  at::NoGradGuard no_grad;
  std::map<std::string, at::Tensor> out;
  const at::Tensor tokens = f.fx.get(LlamaFixture::input_of(set));  // [B, T]
  const std::string o = "output." + set;
  if (full) {
    ForwardOptions opt;
    opt.keep_layer_states = true;
    const at::Tensor embeddings = f.model->embed(tokens);
    LlamaOutput r = f.model->forward(embeddings, opt);
    out[o + "embeddings"] = embeddings;
    out[o + "logits"] = r.logits;
    out[o + "final_hidden"] = r.final_hidden;
    for (std::size_t i = 0; i < r.layer_states.size(); ++i) out[o + "layers." + std::to_string(i)] = r.layer_states[i];
  }
  if (incremental) {
    // Prefill the first P tokens, then one token per step through the cache (sizes from the fixture's shapes).
    const int64_t prefill = f.fx.shape(o + "prefill_logits")[1];
    const int64_t steps = f.fx.shape(o + "decode_logits")[1];
    EXPECT_EQ(prefill + steps, tokens.size(1));
    KVCache cache = f.model->make_cache(tokens.size(0), prefill + steps);
    ForwardOptions opt;
    opt.cache = &cache;
    LlamaOutput r = f.model->forward_ids(tokens.narrow(1, 0, prefill), opt);
    out[o + "prefill_logits"] = r.logits;
    std::vector<at::Tensor> logits, hidden{r.final_hidden};
    for (int64_t t = prefill; t < prefill + steps; ++t) {
      LlamaOutput s = f.model->forward_ids(tokens.narrow(1, t, 1), opt);
      logits.push_back(s.logits);
      hidden.push_back(s.final_hidden);
    }
    out[o + "decode_logits"] = at::cat(logits, 1);
    out[o + "incremental_final_hidden"] = at::cat(hidden, 1);
    EXPECT_EQ(cache.length(0), prefill + steps);
  }
  return out;
}

// Compares every fixture output of `set` whose kind (`incremental` or not) is selected; reports the errors.
void check_outputs(const LlamaFixture& f, const std::string& set, bool incremental) {
  const auto computed = compute_outputs(f, set, !incremental, incremental);
  const std::set<std::string> incremental_names{"prefill_logits", "decode_logits", "incremental_final_hidden"};
  const std::string o = "output." + set;
  int checked = 0;
  for (const auto& name : f.fx.names("output")) {
    if (name.rfind(o, 0) != 0) continue;
    const std::string rest = name.substr(o.size());
    if (set.empty() && rest.find('.') != std::string::npos && rest.rfind("layers.", 0) != 0) continue;  // batch2.*
    if (incremental_names.count(rest) != static_cast<std::size_t>(incremental)) continue;
    auto it = computed.find(name);
    if (it == computed.end()) {
      ADD_FAILURE() << "fixture output " << name << " is not computed by this test";
      continue;
    }
    const auto r = test::AllClose(it->second, f.fx.get(name), f.fx.atol(name), name);
    EXPECT_TRUE(r);
    std::cout << "  " << r.message() << "\n";
    ++checked;
  }
  EXPECT_GE(checked, incremental ? 3 : 3 + f.config.num_hidden_layers);
}

TEST(LlamaParity, FullForward) {
  LlamaFixture f;
  for (const auto& [name, t] : module_state(*f.model)) EXPECT_EQ(test::max_abs_diff(t, f.fx.get(name)), 0.0) << name;
  check_outputs(f, "", /*incremental=*/false);
}

TEST(LlamaParity, IncrementalDecodingThroughKVCache) {
  LlamaFixture f;
  check_outputs(f, "", /*incremental=*/true);
}

TEST(LlamaParity, Batch2FullForward) {
  LlamaFixture f;
  check_outputs(f, "batch2.", /*incremental=*/false);
}

TEST(LlamaParity, Batch2IncrementalDecodingThroughKVCache) {
  LlamaFixture f;
  check_outputs(f, "batch2.", /*incremental=*/true);
}

// The fused projections meet the same fixtures, and the state keeps its names and values (loading and export).
TEST(LlamaParity, FusedProjectionsFullAndIncremental) {
  LlamaFixture f(/*fused=*/true);
  for (const auto& [name, t] : module_state(*f.model)) EXPECT_EQ(test::max_abs_diff(t, f.fx.get(name)), 0.0) << name;
  for (const std::string set : {"", "batch2."}) {
    if (!f.fx.has(LlamaFixture::input_of(set))) continue;
    check_outputs(f, set, /*incremental=*/false);
    check_outputs(f, set, /*incremental=*/true);
  }
}

TEST(LlamaParity, EveryFixtureOutputIsCovered) {
  LlamaFixture f;
  std::map<std::string, at::Tensor> all;
  for (const std::string set : {"", "batch2."}) {
    if (!f.fx.has(LlamaFixture::input_of(set))) continue;
    for (auto& kv : compute_outputs(f, set, true, true)) all.insert(kv);
  }
  for (const auto& name : f.fx.names("output")) EXPECT_TRUE(all.count(name)) << name << " is not checked";
}

TEST(LlamaParity, ConfigFromSidecarMatchesMetaArgs) {
  LlamaFixture f;
  const json& meta = f.fx.config().at("meta_model_args");
  EXPECT_EQ(f.config.hidden_size, meta.at("dim").get<int64_t>());
  EXPECT_EQ(f.config.num_hidden_layers, meta.at("n_layers").get<int64_t>());
  EXPECT_EQ(f.config.num_attention_heads, meta.at("n_heads").get<int64_t>());
  EXPECT_EQ(f.config.vocab_size, meta.at("vocab_size").get<int64_t>());
  EXPECT_DOUBLE_EQ(f.config.rms_norm_eps, meta.at("norm_eps").get<double>());
}

// ---- full-size layouts, built shape-only ----

void expect_llama_layout(const LlamaConfig& config, const std::string& key_file) {
  nn::ShapeOnlyScope shape_only;
  LlamaForCausalLM model(config);
  std::map<std::string, std::vector<int64_t>> ours;
  for (const auto& [name, t] : module_state(*model)) {
    EXPECT_TRUE(t.is_meta()) << name << " was allocated";
    ours[name] = t.sizes().vec();
  }
  const auto expected = test::key_list(key_file, {"model.layers.", "model.embed_tokens.", "model.norm.", "lm_head."});
  EXPECT_EQ(expected.size(), static_cast<std::size_t>(9 * config.num_hidden_layers + 3));
  for (const auto& [name, shape] : expected) EXPECT_TRUE(ours.count(name)) << "missing " << name;
  for (const auto& [name, shape] : ours) EXPECT_TRUE(expected.count(name)) << "extra " << name;
  EXPECT_EQ(ours, expected);
  // The model's config agrees with the key file's.
  const json j = read_json_file(test::key_file(key_file)).at("config");
  EXPECT_EQ(config.hidden_size, j.at("hidden_size").get<int64_t>());
  EXPECT_EQ(config.intermediate_size, j.at("intermediate_size").get<int64_t>());
  EXPECT_EQ(config.num_hidden_layers, j.at("num_hidden_layers").get<int64_t>());
  EXPECT_EQ(config.num_attention_heads, j.at("num_attention_heads").get<int64_t>());
  EXPECT_EQ(config.vocab_size, j.at("vocab_size").get<int64_t>());
}

TEST(LlamaKeys, M2sa7bLlamaPart) { expect_llama_layout(LlamaConfig::llama_7b(), "m2sa_7b_keys.json"); }
TEST(LlamaKeys, M2sa13bLlamaPart) { expect_llama_layout(LlamaConfig::llama2_13b(), "m2sa_13b_keys.json"); }

}  // namespace
}  // namespace m2sa::llama
