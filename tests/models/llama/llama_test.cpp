// LLaMA decoder behaviour beyond the fixture: configs, the KV cache with sequences of different lengths,
// bad input, gradient checkpointing.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <functional>

#include "m2sa/core/error.h"
#include "m2sa/io/module_weights.h"
#include "m2sa/models/llama/llama_model.h"
#include "m2sa/nn/init.h"
#include "m2sa/nn/lora.h"
#include "models/llama/llama_test_model.h"
#include "test_util.h"

namespace m2sa::llama {
namespace {

#define EXPECT_ERROR(stmt, text)                                                        \
  do {                                                                                  \
    const std::string _msg = test::m2sa_error_of([&] { stmt; });                                   \
    EXPECT_NE(_msg.find(text), std::string::npos) << "error was: \"" << _msg << "\""; \
  } while (0)

LlamaConfig tiny_config() {
  LlamaConfig c;
  c.vocab_size = 97;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.rms_norm_eps = 1e-6;
  c.max_position_embeddings = 48;
  return c;
}

// A model with weights of a scale that gives well-separated logits (greedy decoding without near-ties).
LlamaForCausalLM random_model(uint64_t seed = 7) { return test_model::separated_logits_model(tiny_config(), seed); }

at::Tensor ids(std::vector<int64_t> v) { return at::tensor(v, at::kLong).unsqueeze(0); }

// ---- configs ----

TEST(LlamaConfig, PresetsAndStrictJson) {
  const LlamaConfig b7 = LlamaConfig::llama_7b(), b13 = LlamaConfig::llama2_13b();
  EXPECT_EQ(b7.vocab_size, 32003);
  EXPECT_EQ(b7.head_dim(), 128);
  EXPECT_DOUBLE_EQ(b7.rms_norm_eps, 1e-6);
  EXPECT_EQ(b7.max_position_embeddings, 2048);
  EXPECT_EQ(b13.hidden_size, 5120);
  EXPECT_EQ(b13.num_hidden_layers, 40);
  EXPECT_DOUBLE_EQ(b13.rms_norm_eps, 1e-5);
  EXPECT_EQ(b13.max_position_embeddings, 4096);
  const json j = b13.to_json();
  EXPECT_EQ(LlamaConfig::from_json(JsonReader(j, "llm.json")).to_json(), j);
  json extra = j;
  extra["hidden_act"] = "silu";
  EXPECT_ERROR(LlamaConfig::from_json(JsonReader(extra, "llm.json")), "hidden_act");
  json missing = j;
  missing.erase("rms_norm_eps");
  EXPECT_ERROR(LlamaConfig::from_json(JsonReader(missing, "llm.json")), "llm.json: rms_norm_eps: required field is missing");
  json bad = j;
  bad["num_attention_heads"] = 7;
  EXPECT_ERROR(LlamaConfig::from_json(JsonReader(bad, "llm.json")), "llm.json: hidden_size 5120 is not divisible by num_attention_heads 7");
  bad = j;
  bad["vocab_size"] = 0;
  EXPECT_ERROR(LlamaConfig::from_json(JsonReader(bad, "llm.json")), "vocab_size must be positive");
  json no_theta = j;
  no_theta.erase("rope_theta");
  EXPECT_DOUBLE_EQ(LlamaConfig::from_json(JsonReader(no_theta, "llm.json")).rope_theta, 10000.0);
}

TEST(LlamaConfig, FromHfConfigReadsLlavaStyleFilesAndRefusesUnsupportedSettings) {
  // The top of a LISA / M2SA config.json (llama fields plus LLaVA / LISA fields that are not ours).
  const json lisa = json::parse(R"({
    "_name_or_path": "LLaVA-Lightning-7B-v1-1", "architectures": ["LISAForCausalLM"], "model_type": "llava",
    "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "hidden_act": "silu", "hidden_size": 4096,
    "initializer_range": 0.02, "intermediate_size": 11008, "max_position_embeddings": 2048,
    "mm_hidden_size": 1024, "mm_use_im_start_end": true, "mm_vision_select_layer": -2,
    "mm_vision_select_feature": "patch", "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 32, "pretraining_tp": 1, "rms_norm_eps": 1e-06, "rope_scaling": null,
    "tie_word_embeddings": false, "torch_dtype": "bfloat16", "train_mask_decoder": true, "out_dim": 256,
    "transformers_version": "4.31.0", "use_cache": false, "vocab_size": 32003
  })");
  EXPECT_EQ(LlamaConfig::from_hf_config(lisa, "config.json").to_json(), LlamaConfig::llama_7b().to_json());
  EXPECT_EQ(LlamaConfig::from_hf_config(json::object(), "config.json").vocab_size, 32000);  // HF default

  json bad = lisa;
  bad["hidden_act"] = "gelu";
  EXPECT_ERROR(LlamaConfig::from_hf_config(bad, "config.json"), "config.json: hidden_act: only \"silu\"");
  bad = lisa;
  bad["num_key_value_heads"] = 8;
  EXPECT_ERROR(LlamaConfig::from_hf_config(bad, "config.json"), "grouped-query attention");
  bad = lisa;
  bad["rope_scaling"] = json{{"type", "linear"}, {"factor", 2.0}};
  EXPECT_ERROR(LlamaConfig::from_hf_config(bad, "config.json"), "config.json: rope_scaling: RoPE scaling is not supported");
  bad = lisa;
  bad["tie_word_embeddings"] = true;
  EXPECT_ERROR(LlamaConfig::from_hf_config(bad, "config.json"), "tie_word_embeddings");
  bad = lisa;
  bad["head_dim"] = 64;
  EXPECT_ERROR(LlamaConfig::from_hf_config(bad, "config.json"), "config.json: head_dim: 64 differs");
  bad = lisa;
  bad["hidden_size"] = "4096";
  EXPECT_ERROR(LlamaConfig::from_hf_config(bad, "config.json"), "config.json: hidden_size: expected an integer");
}

// ---- KV cache ----

TEST(LlamaCache, ChunkedPrefillAndDecodeEqualTheFullForward) {
  LlamaForCausalLM m = random_model();
  at::NoGradGuard no_grad;
  const at::Tensor tokens = at::randint(0, 97, {2, 11}, at::kLong);
  const LlamaOutput full = m->forward_ids(tokens);
  KVCache cache = m->make_cache(2, 16);
  ForwardOptions opt;
  opt.cache = &cache;
  std::vector<at::Tensor> logits, hidden;
  int64_t pos = 0;
  for (int64_t chunk : {4, 3, 1, 1, 2}) {
    LlamaOutput r = m->forward_ids(tokens.narrow(1, pos, chunk), opt);
    logits.push_back(r.logits);
    hidden.push_back(r.final_hidden);
    pos += chunk;
  }
  EXPECT_EQ(cache.lengths(), (std::vector<int64_t>{11, 11}));
  EXPECT_TRUE(test::AllClose(at::cat(logits, 1), full.logits, 1e-5, "logits"));
  EXPECT_TRUE(test::AllClose(at::cat(hidden, 1), full.final_hidden, 1e-5, "final hidden"));
  // reset() reuses the buffers for a new prompt.
  cache.reset();
  LlamaOutput again = m->forward_ids(tokens.narrow(1, 0, 4), opt);
  EXPECT_TRUE(test::AllClose(again.logits, full.logits.narrow(1, 0, 4), 1e-5, "after reset"));
}

struct Decoded {
  std::vector<int64_t> tokens;
  std::vector<at::Tensor> step_logits;  // [V] per generated token
  at::Tensor prompt_hidden;             // [L, H]
};

Decoded greedy_single(const LlamaForCausalLM& m, const std::vector<int64_t>& prompt, int64_t steps) {
  KVCache cache = m->make_cache(1, static_cast<int64_t>(prompt.size()) + steps);
  ForwardOptions opt;
  opt.cache = &cache;
  Decoded d;
  LlamaOutput r = m->forward_ids(ids(prompt), opt);
  d.prompt_hidden = r.final_hidden[0];
  at::Tensor last = r.logits[0][-1];
  for (int64_t s = 0; s < steps; ++s) {
    d.step_logits.push_back(last);
    const int64_t next = last.argmax().item<int64_t>();
    d.tokens.push_back(next);
    last = m->forward_ids(ids({next}), opt).logits[0][-1];
  }
  return d;
}

TEST(LlamaCache, BatchedPromptsOfDifferentLengthsDecodeLikeEachAlone) {
  LlamaForCausalLM m = random_model();
  at::NoGradGuard no_grad;
  const std::vector<std::vector<int64_t>> prompts{{5, 17, 3, 88, 41}, {9, 2, 60, 33, 71, 12, 8, 90, 4}, {30, 1, 2}};
  const int64_t steps = 7, b = 3, width = 9;
  std::vector<Decoded> single;
  for (const auto& p : prompts) single.push_back(greedy_single(m, p, steps));

  // Right-padded prompt batch with a 0/1 mask; pad id 0 like LISA's tokenizer.
  at::Tensor batch = at::zeros({b, width}, at::kLong), mask = at::zeros({b, width}, at::kLong);
  for (int64_t r = 0; r < b; ++r)
    for (std::size_t j = 0; j < prompts[r].size(); ++j) {
      batch[r][j] = prompts[r][j];
      mask[r][j] = 1;
    }
  KVCache cache = m->make_cache(b, width + steps);
  ForwardOptions prefill;
  prefill.cache = &cache;
  prefill.attention_mask = mask;
  LlamaOutput r = m->forward_ids(batch, prefill);
  EXPECT_EQ(cache.lengths(), (std::vector<int64_t>{5, 9, 3}));
  for (int64_t i = 0; i < b; ++i) {
    const auto n = static_cast<int64_t>(prompts[i].size());
    EXPECT_TRUE(test::AllClose(r.final_hidden[i].narrow(0, 0, n), single[i].prompt_hidden, 1e-5, "prompt hidden"));
  }
  // Each row's next-token logits sit at its own last real token.
  ForwardOptions step;
  step.cache = &cache;
  at::Tensor last = at::stack({r.logits[0][4], r.logits[1][8], r.logits[2][2]});  // [B, V]
  for (int64_t s = 0; s < steps; ++s) {
    at::Tensor next = last.argmax(-1);  // [B]
    for (int64_t i = 0; i < b; ++i) {
      EXPECT_TRUE(test::AllClose(last[i], single[i].step_logits[s], 1e-5, "step " + std::to_string(s)));
      EXPECT_EQ(next[i].item<int64_t>(), single[i].tokens[s]) << "row " << i << " step " << s;
    }
    last = m->forward_ids(next.unsqueeze(1), step).logits.select(1, 0);
  }
  EXPECT_EQ(cache.lengths(), (std::vector<int64_t>{5 + steps, 9 + steps, 3 + steps}));

  // last_logits_only picks the same rows.
  cache.reset();
  prefill.last_logits_only = true;
  LlamaOutput lo = m->forward_ids(batch, prefill);
  EXPECT_EQ(lo.logits.sizes(), (std::vector<int64_t>{b, 1, 97}));
  EXPECT_TRUE(test::AllClose(lo.logits.select(1, 0), at::stack({r.logits[0][4], r.logits[1][8], r.logits[2][2]}),
                             1e-6, "last logits"));
}

TEST(LlamaCache, RowWithoutRealTokensStaysInPlace) {
  LlamaForCausalLM m = random_model();
  at::NoGradGuard no_grad;
  const at::Tensor prompt = at::randint(0, 97, {2, 6}, at::kLong);
  KVCache cache = m->make_cache(2, 12);
  ForwardOptions opt;
  opt.cache = &cache;
  m->forward_ids(prompt, opt);
  // Row 1 is finished: feed it a dummy token with mask 0; it keeps its length and its next real step is unaffected.
  opt.attention_mask = at::tensor({1, 0}, at::kLong).unsqueeze(1);
  m->forward_ids(at::tensor({3, 50}, at::kLong).unsqueeze(1), opt);
  EXPECT_EQ(cache.lengths(), (std::vector<int64_t>{7, 6}));
  opt.attention_mask = at::Tensor();
  LlamaOutput r = m->forward_ids(at::tensor({4, 5}, at::kLong).unsqueeze(1), opt);
  const LlamaOutput ref = m->forward_ids(at::cat({prompt[1], at::tensor({5}, at::kLong)}).unsqueeze(0));
  EXPECT_TRUE(test::AllClose(r.logits[1][0], ref.logits[0][-1], 1e-5, "row 1 after a held step"));
}

TEST(LlamaCache, PaddedTrainingBatchMatchesUnpaddedRows) {
  LlamaForCausalLM m = random_model();
  at::NoGradGuard no_grad;
  const at::Tensor a = at::randint(0, 97, {1, 7}, at::kLong), b = at::randint(0, 97, {1, 4}, at::kLong);
  at::Tensor batch = at::zeros({2, 7}, at::kLong);
  batch[0] = a[0];
  batch[1].narrow(0, 0, 4).copy_(b[0]);
  ForwardOptions opt;
  opt.attention_mask = at::tensor({1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0}, at::kLong).view({2, 7});
  LlamaOutput r = m->forward_ids(batch, opt);
  EXPECT_TRUE(test::AllClose(r.logits[0], m->forward_ids(a).logits[0], 1e-5, "row 0"));
  EXPECT_TRUE(test::AllClose(r.logits[1].narrow(0, 0, 4), m->forward_ids(b).logits[0], 1e-5, "row 1"));
  EXPECT_FALSE(r.logits.isnan().any().item<bool>());
  // Explicit positions equal to the defaults change nothing; a uniform shift changes nothing either (RoPE only
  // sees relative positions), but a gap does.
  opt.position_ids = at::arange(7, at::kLong).unsqueeze(0).expand({2, 7});
  EXPECT_TRUE(test::AllClose(m->forward_ids(batch, opt).logits, r.logits, 0.0, "explicit positions"));
  opt.position_ids = at::arange(7, at::kLong).unsqueeze(0).expand({2, 7}) + 3;
  EXPECT_TRUE(test::AllClose(m->forward_ids(batch, opt).logits, r.logits, 1e-4, "shifted positions"));
  opt.position_ids = at::tensor({0, 1, 2, 3, 10, 11, 12}, at::kLong).unsqueeze(0).expand({2, 7});
  EXPECT_GT(test::max_abs_diff(m->forward_ids(batch, opt).logits[0], r.logits[0]), 1e-3);
}

// ---- bad input ----

TEST(LlamaErrors, BadInputGivesClearErrors) {
  LlamaForCausalLM m = random_model();
  at::NoGradGuard no_grad;
  EXPECT_ERROR(m->embed(ids({1, 97})), "token id 97 is outside the vocabulary [0, 97)");
  EXPECT_ERROR(m->embed(ids({-3, 2})), "token id -3 is outside the vocabulary [0, 97)");
  EXPECT_ERROR(m->embed(at::zeros({4}, at::kLong)), "token ids must be [B, T], got [4]");
  EXPECT_ERROR(m->embed(at::zeros({1, 4})), "token ids must be integers");
  EXPECT_ERROR(m->forward_ids(at::zeros({1, 49}, at::kLong)),
               "a sequence of 49 tokens is longer than max_position_embeddings = 48");
  EXPECT_ERROR(m->forward(at::zeros({1, 3, 31})), "inputs_embeds must be [B, T, 32], got [1, 3, 31]");
  EXPECT_ERROR(m->forward(at::zeros({1, 0, 32})), "empty input");
  ForwardOptions opt;
  opt.attention_mask = at::ones({1, 3}, at::kLong);
  EXPECT_ERROR(m->forward_ids(at::zeros({1, 4}, at::kLong), opt), "attention_mask must be [1, 4] like the inputs, got [1, 3]");
  opt.attention_mask = at::tensor({1, 0, 1, 1}, at::kLong).unsqueeze(0);
  EXPECT_ERROR(m->forward_ids(at::zeros({1, 4}, at::kLong), opt), "row 0 is not right-padded");
  opt.attention_mask = at::tensor({1, 2, 1, 1}, at::kLong).unsqueeze(0);
  EXPECT_ERROR(m->forward_ids(at::zeros({1, 4}, at::kLong), opt), "only 0 and 1");
  opt.attention_mask = at::zeros({1, 4}, at::kLong);
  EXPECT_ERROR(m->forward_ids(at::zeros({1, 4}, at::kLong), opt), "row 0 has no real token");
  opt.attention_mask = at::Tensor();
  opt.position_ids = at::tensor({0, 1, 48}, at::kLong).unsqueeze(0);
  EXPECT_ERROR(m->forward_ids(at::zeros({1, 3}, at::kLong), opt),
               "position id 48 is outside [0, max_position_embeddings = 48)");
}

TEST(LlamaErrors, CacheOverflowAndMismatchesGiveClearErrors) {
  LlamaForCausalLM m = random_model();
  at::NoGradGuard no_grad;
  EXPECT_ERROR(m->make_cache(1, 49), "capacity 49 must be in [1, max_position_embeddings = 48]");
  EXPECT_ERROR(m->make_cache(0, 8), "batch size must be positive");
  KVCache cache = m->make_cache(1, 6);
  ForwardOptions opt;
  opt.cache = &cache;
  m->forward_ids(at::zeros({1, 5}, at::kLong), opt);
  EXPECT_ERROR(m->forward_ids(at::zeros({1, 2}, at::kLong), opt),
               "KV cache overflow: sequence 0 holds 5 tokens, this step adds 2, capacity is 6");
  EXPECT_EQ(cache.length(0), 5);  // a refused step changes nothing
  m->forward_ids(at::zeros({1, 1}, at::kLong), opt);
  EXPECT_ERROR(m->forward_ids(at::zeros({1, 1}, at::kLong), opt), "KV cache overflow");
  EXPECT_ERROR(m->forward_ids(at::zeros({2, 1}, at::kLong), opt), "the KV cache holds 1 sequences, the input has 2");
  LlamaConfig other = tiny_config();
  other.num_hidden_layers = 3;
  KVCache wrong(other, 1, 8, at::TensorOptions().dtype(at::kFloat));
  opt.cache = &wrong;
  EXPECT_ERROR(m->forward_ids(at::zeros({1, 1}, at::kLong), opt), "the KV cache was made for 3 layers");
  KVCache bf16(tiny_config(), 1, 8, at::TensorOptions().dtype(at::kBFloat16));
  opt.cache = &bf16;
  EXPECT_ERROR(m->forward_ids(at::zeros({1, 1}, at::kLong), opt), "the KV cache is");
}

TEST(LlamaModel, ShapeOnlyBuildAllocatesNothingAndRefusesLoading) {
  nn::ShapeOnlyScope shape_only;
  LlamaForCausalLM m(LlamaConfig::llama_7b());
  int64_t n = 0;
  for (const auto& p : m->parameters()) {
    EXPECT_TRUE(p.is_meta());
    n += p.numel();
  }
  EXPECT_EQ(n, 6738415616 + 3 * 4096 * 2);  // LLaMA-7B with 3 added tokens in embed_tokens and lm_head
}

TEST(LlamaModel, Bf16ForwardAndCacheWork) {
  LlamaForCausalLM m = random_model();
  at::NoGradGuard no_grad;
  const at::Tensor tokens = at::randint(0, 97, {1, 8}, at::kLong);
  const at::Tensor ref = m->forward_ids(tokens).logits;
  m->to(at::kBFloat16);
  const LlamaOutput full = m->forward_ids(tokens);
  EXPECT_EQ(full.logits.scalar_type(), at::kBFloat16);
  KVCache cache = m->make_cache(1, 8);
  ForwardOptions opt;
  opt.cache = &cache;
  m->forward_ids(tokens.narrow(1, 0, 7), opt);
  const at::Tensor last = m->forward_ids(tokens.narrow(1, 7, 1), opt).logits;
  EXPECT_LT(test::max_abs_diff(full.logits, ref), 0.05 * ref.abs().max().item<double>() + 0.1);
  EXPECT_LT(test::max_abs_diff(last[0][0], full.logits[0][7]), 0.05 * ref.abs().max().item<double>() + 0.1);
}

// ---- gradient checkpointing ----

struct Grads {
  std::map<std::string, at::Tensor> params;
  at::Tensor input;
};

Grads run_backward(LlamaForCausalLM& m, const at::Tensor& embeds, const at::Tensor& mask, uint64_t seed) {
  for (auto& p : m->parameters()) p.mutable_grad() = at::Tensor();
  at::Tensor x = embeds.detach().clone().set_requires_grad(embeds.requires_grad());
  at::manual_seed(seed);  // the LoRA dropout draws the same masks in both runs
  ForwardOptions opt;
  opt.attention_mask = mask;
  LlamaOutput r = m->forward(x, opt);
  at::Tensor w = at::linspace(-1.0, 1.0, r.logits.numel()).view(r.logits.sizes());
  ((r.logits * w).sum() + r.final_hidden.pow(2).mean()).backward();
  Grads g;
  for (const auto& p : m->named_parameters())
    if (p.value().grad().defined()) g.params[p.key()] = p.value().grad().clone();
  if (x.requires_grad()) g.input = x.grad().clone();
  return g;
}

void expect_same_grads(const Grads& a, const Grads& b) {
  ASSERT_EQ(a.params.size(), b.params.size());
  for (const auto& [name, g] : a.params) {
    ASSERT_TRUE(b.params.count(name)) << name;
    EXPECT_TRUE(test::AllClose(b.params.at(name), g, 1e-6, name));
  }
  ASSERT_EQ(a.input.defined(), b.input.defined());
  if (a.input.defined()) {
    EXPECT_TRUE(test::AllClose(b.input, a.input, 1e-6, "inputs_embeds grad"));
  }
}

TEST(LlamaCheckpointing, FullTrainingGradientsEqualTheStoredActivationRun) {
  LlamaForCausalLM m = random_model();
  m->train();
  const at::Tensor embeds = m->embed(at::randint(0, 97, {2, 9}, at::kLong)).detach().set_requires_grad(true);
  const at::Tensor mask = at::tensor({1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0}, at::kLong).view({2, 9});
  const Grads plain = run_backward(m, embeds, mask, 1);
  m->set_gradient_checkpointing(true);
  const Grads ckpt = run_backward(m, embeds, mask, 1);
  EXPECT_EQ(plain.params.size(), m->parameters().size() - 1);  // all but embed_tokens (embeddings given)
  expect_same_grads(plain, ckpt);
}

TEST(LlamaCheckpointing, WorksWithLoraAndFrozenBaseAndWithoutInputGrad) {
  LlamaForCausalLM m = random_model();
  nn::LoraConfig lc;
  lc.dropout = 0.3;  // so that the recomputation must replay the dropout masks
  nn::apply_lora(*m, lc);
  {
    at::NoGradGuard g;
    for (auto& t : nn::lora_state(*m)) t.second.normal_(0.0, 0.2);
  }
  nn::mark_only_lora_trainable(*m);
  m->train();
  const at::Tensor embeds = m->embed(at::randint(0, 97, {1, 10}, at::kLong)).detach();
  for (bool input_grad : {false, true}) {
    const at::Tensor x = embeds.clone().set_requires_grad(input_grad);
    m->set_gradient_checkpointing(false);
    const Grads plain = run_backward(m, x, at::Tensor(), 5);
    m->set_gradient_checkpointing(true);
    const Grads ckpt = run_backward(m, x, at::Tensor(), 5);
    EXPECT_EQ(plain.params.size(), 2u * 2u * 2u);  // 2 layers x {q, v} x {A, B}
    for (const auto& [name, g] : plain.params) EXPECT_TRUE(nn::is_lora_key(name)) << name;
    expect_same_grads(plain, ckpt);
  }
  // A different seed draws other dropout masks: the gradients then differ, so the test above can fail.
  m->set_gradient_checkpointing(true);
  const Grads other = run_backward(m, embeds, at::Tensor(), 6);
  const Grads base = run_backward(m, embeds, at::Tensor(), 5);
  double diff = 0;
  for (const auto& [name, g] : base.params) diff = std::max(diff, test::max_abs_diff(g, other.params.at(name)));
  EXPECT_GT(diff, 1e-4);
}

TEST(LlamaCheckpointing, InactiveInEvalModeAndWithoutGrad) {
  LlamaForCausalLM m = random_model();
  m->set_gradient_checkpointing(true);
  const at::Tensor tokens = at::randint(0, 97, {1, 6}, at::kLong);
  m->eval();
  const at::Tensor a = m->forward_ids(tokens).logits;
  m->train();
  at::Tensor b;
  {
    at::NoGradGuard g;
    b = m->forward_ids(tokens).logits;
  }
  EXPECT_TRUE(test::AllClose(a, b, 0.0, "eval vs no-grad train"));
  EXPECT_TRUE(m->forward_ids(tokens).logits.requires_grad());
}

}  // namespace
}  // namespace m2sa::llama
