// greedy_decode: the same tokens as decoding without a cache (the reference's way), with the EOS speculation,
// held rows and a full cache; the fixed-shape step (what a CUDA graph replays) equal to the ordinary one.
#include "m2sa/models/llama/greedy_decode.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include "m2sa/models/llama/decode_step_graph.h"
#include "models/llama/llama_test_model.h"
#include "test_util.h"

namespace m2sa::llama {
namespace {

LlamaForCausalLM decode_test_model() {
  LlamaConfig c;
  c.vocab_size = 61;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.rms_norm_eps = 1e-6;
  c.max_position_embeddings = 40;
  return test_model::separated_logits_model(c, 11);
}

const std::vector<std::vector<int64_t>> kPrompts{{5, 17, 3, 38, 41}, {9, 2, 60, 33, 21, 12, 8}, {30, 1, 2}};

// Greedy tokens of one prompt by re-running the whole sequence each step (no cache), up to `eos` or `max_new`.
std::vector<int64_t> reference_tokens(const LlamaForCausalLM& m, std::vector<int64_t> seq, int64_t max_new,
                                      int64_t eos, int64_t max_len) {
  at::NoGradGuard no_grad;
  std::vector<int64_t> out;
  while (static_cast<int64_t>(out.size()) < max_new) {
    const at::Tensor ids = at::tensor(seq, at::kLong).unsqueeze(0);
    const int64_t next = m->forward_ids(ids).logits[0][-1].argmax().item<int64_t>();
    out.push_back(next);
    seq.push_back(next);
    if (next == eos || static_cast<int64_t>(seq.size()) >= max_len) break;
  }
  return out;
}

struct Prefilled {
  KVCache cache;
  at::Tensor logits;
};

Prefilled prefill(const LlamaForCausalLM& m, int64_t capacity) {
  at::NoGradGuard no_grad;
  const auto b = static_cast<int64_t>(kPrompts.size());
  at::Tensor batch = at::zeros({b, 7}, at::kLong), mask = at::zeros({b, 7}, at::kLong);
  for (int64_t r = 0; r < b; ++r)
    for (std::size_t j = 0; j < kPrompts[r].size(); ++j) {
      batch[r][j] = kPrompts[r][j];
      mask[r][j] = 1;
    }
  batch = batch.to(m->lm_head->weight.device());
  Prefilled p{m->make_cache(b, capacity), at::Tensor()};
  ForwardOptions o;
  o.cache = &p.cache;
  o.attention_mask = mask;
  o.last_logits_only = true;
  p.logits = m->forward_ids(batch, o).logits;
  return p;
}

GreedyDecodeOutput decode(const LlamaForCausalLM& m, int64_t capacity, int64_t max_new, int64_t eos, bool fixed) {
  Prefilled p = prefill(m, capacity);
  GreedyDecodeOptions o;
  o.max_new_tokens = max_new;
  o.eos_token_id = eos;
  o.fixed_shape = fixed;
  return greedy_decode(m, p.cache, p.logits, o);
}

TEST(GreedyDecode, SameTokensAsRecomputingWithoutACache) {
  const LlamaForCausalLM m = decode_test_model();
  const GreedyDecodeOutput free_run = decode(m, 40, 12, /*eos=*/-1, false);
  // An EOS that row 0 produces at its 4th token: row 0 ends there (after one speculative step), the others go on.
  const int64_t eos = free_run.output_ids[0][3];
  for (const bool fixed : {false, true}) {
    const GreedyDecodeOutput r = decode(m, 40, 12, eos, fixed);
    for (std::size_t k = 0; k < kPrompts.size(); ++k) {
      EXPECT_EQ(r.output_ids[k], reference_tokens(m, kPrompts[k], 12, eos, 40)) << "row " << k << " fixed " << fixed;
      const bool ended = r.output_ids[k].back() == eos;
      EXPECT_EQ(r.finish_reasons[k], ended ? FinishReason::kEos : FinishReason::kMaxNewTokens) << "row " << k;
    }
    EXPECT_LE(r.output_ids[0].size(), 4u);
  }
}

TEST(GreedyDecode, AFullCacheEndsEachRowAtItsOwnLength) {
  const LlamaForCausalLM m = decode_test_model();
  const int64_t capacity = 12;
  for (const bool fixed : {false, true}) {
    const GreedyDecodeOutput r = decode(m, capacity, 30, -1, fixed);
    for (std::size_t k = 0; k < kPrompts.size(); ++k) {
      EXPECT_EQ(r.finish_reasons[k], FinishReason::kContextFull) << "row " << k;
      // A row holds its prompt and every generated token but the last, and keeps one spare slot.
      EXPECT_EQ(kPrompts[k].size() + r.output_ids[k].size() - 1 + 1, static_cast<std::size_t>(capacity)) << "row " << k;
      EXPECT_EQ(r.output_ids[k], reference_tokens(m, kPrompts[k], 30, -1, capacity)) << "row " << k;
    }
  }
}

TEST(GreedyDecode, FixedShapeStepsEqualOrdinaryStepsWithDifferentRowLengths) {
  const LlamaForCausalLM m = decode_test_model();
  const GreedyDecodeOutput ordinary = decode(m, 40, 10, -1, false);
  const GreedyDecodeOutput fixed = decode(m, 40, 10, -1, true);
  EXPECT_EQ(fixed.output_ids, ordinary.output_ids);
  ASSERT_EQ(fixed.step_hidden.size(), ordinary.step_hidden.size());
  for (std::size_t s = 0; s < fixed.step_hidden.size(); ++s)
    EXPECT_TRUE(test::AllClose(fixed.step_hidden[s], ordinary.step_hidden[s], 1e-5, "step " + std::to_string(s)));
  // The cache ends in the same state either way (host and device lengths).
  Prefilled a = prefill(m, 40), b = prefill(m, 40);
  GreedyDecodeOptions o;
  o.max_new_tokens = 6;
  o.eos_token_id = -1;
  (void)greedy_decode(m, a.cache, a.logits, o);
  o.fixed_shape = true;
  (void)greedy_decode(m, b.cache, b.logits, o);
  EXPECT_EQ(a.cache.lengths(), b.cache.lengths());
  EXPECT_TRUE(at::equal(b.cache.device_lengths(), at::tensor(b.cache.lengths(), at::kLong)));
  EXPECT_TRUE(at::equal(a.cache.device_lengths(), at::tensor(a.cache.lengths(), at::kLong)));
}

TEST(GreedyDecode, GraphsAreOnlyOfferedOnCuda) {
  EXPECT_FALSE(DecodeStepGraph::supported(c10::Device(at::kCPU)));
}

// On a GPU ($M2SA_TEST_DEVICE=cuda, scripts/gpu-check.sh): replaying the captured step gives the eager tokens and
// states, with rows of different lengths, and after a row ends (the fall-back to eager steps).
TEST(GreedyDecode, CudaGraphReplaysEqualEagerSteps) {
  if (!test::device().is_cuda()) GTEST_SKIP() << "needs M2SA_TEST_DEVICE=cuda";
  LlamaForCausalLM m = decode_test_model();
  m->to(test::device());
  const GreedyDecodeOutput probe = decode(m, 40, 12, -1, false);
  for (const int64_t eos : {int64_t{-1}, probe.output_ids[1][5]}) {
    std::vector<GreedyDecodeOutput> runs;
    for (const bool graph : {false, true}) {
      Prefilled p = prefill(m, 40);
      GreedyDecodeOptions o;
      o.max_new_tokens = 12;
      o.eos_token_id = eos;
      o.cuda_graph = graph;
      runs.push_back(greedy_decode(m, p.cache, p.logits, o));
    }
    EXPECT_EQ(runs[1].output_ids, runs[0].output_ids) << "eos " << eos;
    ASSERT_EQ(runs[1].step_hidden.size(), runs[0].step_hidden.size());
    for (std::size_t s = 0; s < runs[0].step_hidden.size(); ++s)
      EXPECT_TRUE(test::AllClose(runs[1].step_hidden[s], runs[0].step_hidden[s], 1e-4, "step " + std::to_string(s)));
  }
}

}  // namespace
}  // namespace m2sa::llama
