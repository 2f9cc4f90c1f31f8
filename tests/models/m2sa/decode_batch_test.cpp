// Continuous batching (m2sa_model::DecodeBatch): one sequence alone decodes bit-identically to generate() with that
// prompt; sequences that join a running batch at different steps and leave it when done get the ids and [SEG]
// embeddings they get alone (up to batching noise); cancel() removes a sequence; KVCache::keep_rows / append_rows
// move rows with their lengths.
#include "m2sa/models/m2sa/decode_batch.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <map>
#include <vector>

#include "m2sa/models/llama/kv_cache.h"
#include "models/m2sa/m2sa_test_util.h"
#include "test_util.h"

namespace m2sa {
namespace {

using m2sa_model::DecodeBatch;
using m2sa_model::GenerationResult;

struct Case {
  std::vector<int64_t> ids;
  int64_t image = 0;
  int64_t max_new = 0;
};

// The tiny model with lm_head biased towards a few tokens (including [SEG] and </s>), so that answers vary in length
// and contain [SEG]s.
m2sa_model::M2SAForCausalLM biased_model() {
  m2sa_model::M2SAForCausalLM m = test::tiny_model(41);
  at::NoGradGuard no_grad;
  at::manual_seed(5);
  at::Tensor& w = m->llm->lm_head->weight;
  w.mul_(0.01);
  for (int64_t id : {2l, 100l, 200l, 300l, test::kSeg}) w[id].copy_(at::randn({w.size(1)}) * 0.5);
  return m;
}

void drain(DecodeBatch& d, std::map<int64_t, GenerationResult>& out) {
  for (auto& [h, r] : d.take_finished()) out[h] = std::move(r);
}

TEST(DecodeBatch, AloneEqualsGenerateBitwise) {
  m2sa_model::M2SAForCausalLM m = biased_model();
  const auto c = m->config();
  const m2sa_model::ImageBatch images = test::random_images(c, {{64, 80}});
  const at::Tensor feats = m->image_features(images.clip_images);
  const std::vector<int64_t> ids = test::prompt_ids(3);
  m2sa_model::GenerationRequest req;
  req.images = images;
  req.image_features = feats;
  req.prompts = {m2sa_model::GenerationPrompt{ids, 0}};
  m2sa_model::GenerationOptions go;
  go.max_new_tokens = 20;
  go.compute_masks = false;
  const GenerationResult expected = m->generate(req, go).results[0];

  DecodeBatch d(*m, 2);
  const int64_t h = d.add(ids, feats, 20);
  std::map<int64_t, GenerationResult> done;
  while (d.running() > 0) d.step();
  drain(d, done);
  ASSERT_EQ(done.count(h), 1u);
  const GenerationResult& r = done[h];
  EXPECT_EQ(r.output_ids, expected.output_ids);
  EXPECT_EQ(r.finish_reason, expected.finish_reason);
  EXPECT_EQ(r.seg_indices, expected.seg_indices);
  EXPECT_EQ(r.prompt_length, expected.prompt_length);
  ASSERT_EQ(r.seg_embeddings.sizes(), expected.seg_embeddings.sizes());
  EXPECT_TRUE(r.seg_embeddings.equal(expected.seg_embeddings)) << "bit-identical [SEG] embeddings";
  // The tokens streamed are the output ids, the last one flagged.
  std::vector<int64_t> streamed;
  for (const auto& t : d.take_tokens()) streamed.push_back(t.id);
  EXPECT_EQ(streamed, expected.output_ids);
}

TEST(DecodeBatch, JoiningAndLeavingEqualsAlone) {
  m2sa_model::M2SAForCausalLM m = biased_model();
  const auto c = m->config();
  const m2sa_model::ImageBatch images = test::random_images(c, {{64, 80}, {90, 50}});
  const at::Tensor feats = m->image_features(images.clip_images);
  const std::vector<Case> cases = {{test::prompt_ids(0), 0, 12}, {test::prompt_ids(5), 1, 25},
                                   {test::prompt_ids(2), 0, 3},  {test::prompt_ids(9), 1, 18},
                                   {test::prompt_ids(1), 1, 1}};
  std::vector<GenerationResult> alone;
  for (const Case& k : cases) {
    DecodeBatch d(*m, 2);
    d.add(k.ids, feats.slice(0, k.image, k.image + 1), k.max_new);
    while (d.running() > 0) d.step();
    auto f = d.take_finished();
    ASSERT_EQ(f.size(), 1u);
    alone.push_back(f[0].second);
  }
  // Case k joins before step 2k; the batch changes while others decode.
  DecodeBatch d(*m, 2);
  std::map<int64_t, std::size_t> which;
  std::map<int64_t, GenerationResult> done;
  std::size_t next = 0;
  int64_t max_rows = 0;
  for (int64_t step = 0; next < cases.size() || d.running() > 0; ++step) {
    if (next < cases.size() && step == static_cast<int64_t>(2 * next)) {
      const Case& k = cases[next];
      which[d.add(k.ids, feats.slice(0, k.image, k.image + 1), k.max_new)] = next;
      ++next;
    }
    max_rows = std::max(max_rows, d.running());
    d.step();
    drain(d, done);
  }
  drain(d, done);
  EXPECT_GE(max_rows, 2) << "sequences must have decoded together";
  ASSERT_EQ(done.size(), cases.size());
  for (const auto& [h, r] : done) {
    const GenerationResult& e = alone[which[h]];
    EXPECT_EQ(r.output_ids, e.output_ids) << "case " << which[h];
    EXPECT_EQ(r.finish_reason, e.finish_reason) << "case " << which[h];
    EXPECT_EQ(r.seg_indices, e.seg_indices) << "case " << which[h];
    if (e.seg_embeddings.numel() > 0) {
      EXPECT_TRUE(test::AllClose(r.seg_embeddings, e.seg_embeddings, 1e-4, "case " + std::to_string(which[h])));
    }
  }
  EXPECT_EQ(alone[4].output_ids.size(), 1u) << "max_new_tokens 1 finishes at the prefill";
}

TEST(DecodeBatch, CancelRemovesASequence) {
  m2sa_model::M2SAForCausalLM m = biased_model();
  const auto c = m->config();
  const m2sa_model::ImageBatch images = test::random_images(c, {{64, 80}});
  const at::Tensor feats = m->image_features(images.clip_images);
  // An end token that never wins (its lm_head row is zero, the favoured tokens' are not): both run to max_new_tokens.
  {
    at::NoGradGuard no_grad;
    m->llm->lm_head->weight[31999].zero_();
  }
  DecodeBatch d(*m, 31999);
  const int64_t a = d.add(test::prompt_ids(0), feats, 40);
  const int64_t b = d.add(test::prompt_ids(4), feats, 10);
  d.step();
  EXPECT_EQ(d.running(), 2);
  EXPECT_TRUE(d.cancel(a));
  EXPECT_FALSE(d.cancel(a));
  EXPECT_EQ(d.running(), 1);
  while (d.running() > 0) d.step();
  auto f = d.take_finished();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].first, b);
  EXPECT_EQ(f[0].second.output_ids.size(), 10u);
  EXPECT_EQ(f[0].second.finish_reason, m2sa_model::FinishReason::kMaxNewTokens);
}

TEST(KVCache, KeepRowsAndAppendRowsMoveRowsWithTheirLengths) {
  const auto lc = test::tiny_config().llama;
  llama::KVCache a(lc, 3, 8, at::TensorOptions().dtype(at::kFloat));
  llama::KVCache b(lc, 1, 12, at::TensorOptions().dtype(at::kFloat));
  for (int64_t l = 0; l < a.num_layers(); ++l) {
    a.append(l, at::randn({3, a.num_heads(), 2, a.head_dim()}), at::randn({3, a.num_heads(), 2, a.head_dim()}));
    b.append(l, at::full({1, b.num_heads(), 5, b.head_dim()}, 7.0), at::full({1, b.num_heads(), 5, b.head_dim()}, 8.0));
  }
  a.advance({2, 1, 2});
  b.advance({5});
  a.keep_rows({2, 0});
  EXPECT_EQ(a.batch_size(), 2);
  EXPECT_EQ(a.lengths(), (std::vector<int64_t>{2, 2}));
  a.append_rows(b);
  EXPECT_EQ(a.batch_size(), 3);
  EXPECT_EQ(a.capacity(), 12);
  EXPECT_EQ(a.lengths(), (std::vector<int64_t>{2, 2, 5}));
  const auto kv = a.append(0, at::zeros({3, a.num_heads(), 1, a.head_dim()}), at::zeros({3, a.num_heads(), 1, a.head_dim()}));
  EXPECT_EQ(kv.first.size(2), 6);
  EXPECT_EQ(kv.first[2].slice(1, 0, 5).eq(7.0).all().item<bool>(), true);
  EXPECT_FALSE(test::m2sa_error_of([&] { a.keep_rows({}); }).empty());
  EXPECT_FALSE(test::m2sa_error_of([&] { a.keep_rows({3}); }).empty());
}

}  // namespace
}  // namespace m2sa
