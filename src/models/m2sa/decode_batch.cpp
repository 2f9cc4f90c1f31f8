#include "m2sa/models/m2sa/decode_batch.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <string>
#include <utility>

#include "m2sa/core/error.h"
#include "m2sa/nn/attention.h"

namespace m2sa::m2sa_model {

DecodeBatch::DecodeBatch(const M2SAForCausalLMImpl& model, int64_t eos_token_id) : model_(model), eos_(eos_token_id) {
  M2SA_CHECK(eos_token_id >= 0 && eos_token_id < model.config().vocab_size(), "DecodeBatch: eos_token_id ",
             eos_token_id, " is outside the vocabulary");
}

bool DecodeBatch::push_token(Row& row, int64_t token, int64_t cache_length) {
  row.output_ids.push_back(token);
  if (token == model_.config().m2sa.seg_token_id) row.seg_states.push_back(row.last_hidden);
  return token == eos_ || static_cast<int64_t>(row.output_ids.size()) >= row.max_new_tokens ||
         cache_length + 1 >= row.capacity;
}

void DecodeBatch::finish(Row& row) {
  GenerationResult r;
  r.output_ids = std::move(row.output_ids);
  r.prompt_length = row.prompt_length;
  // generate()'s order of checks: EOS, then max_new_tokens, then the context.
  if (r.output_ids.back() == eos_) r.finish_reason = FinishReason::kEos;
  else if (static_cast<int64_t>(r.output_ids.size()) >= row.max_new_tokens) r.finish_reason = FinishReason::kMaxNewTokens;
  else r.finish_reason = FinishReason::kContextFull;
  for (std::size_t j = 0; j < r.output_ids.size(); ++j)
    if (r.output_ids[j] == model_.config().m2sa.seg_token_id) r.seg_indices.push_back(static_cast<int64_t>(j));
  at::NoGradGuard no_grad;
  r.seg_embeddings = row.seg_states.empty()
                         ? at::empty({0, model_.config().m2sa.out_dim}, row.last_hidden.options())
                         : model_.project_seg(at::stack(row.seg_states, 0));
  finished_.emplace_back(row.handle, std::move(r));
}

int64_t DecodeBatch::add(const std::vector<int64_t>& ids, const at::Tensor& image_features, int64_t max_new_tokens) {
  nn::AttentionModeGuard attention_mode(model_.config().m2sa.attention);
  at::NoGradGuard no_grad;
  const char* who = "DecodeBatch";
  M2SA_CHECK(!ids.empty(), who, ": the prompt has no tokens");
  M2SA_CHECK(max_new_tokens >= 1, who, ": max_new_tokens must be >= 1, got ", max_new_tokens);
  M2SA_CHECK(image_features.defined() && (image_features.dim() == 2 || image_features.dim() == 3), who,
             ": image_features must be [1, N, H] or [N, H]");
  const at::Tensor feats =
      (image_features.dim() == 2 ? image_features.unsqueeze(0) : image_features).to(model_.device(), model_.dtype());
  M2SA_CHECK(feats.size(0) == 1, who, ": one image per prompt, got ", feats.size(0));
  const int64_t max_pos = model_.config().llama.max_position_embeddings;
  const at::Tensor input = at::tensor(ids, at::TensorOptions().dtype(at::kLong)).unsqueeze(0);
  const at::Tensor embeds = model_.multimodal_embeddings(input, feats);  // [1, P, H]
  const int64_t p = embeds.size(1);
  M2SA_CHECK(p < max_pos, who, ": the prompt has ", p, " positions after the image splice, which leaves no room to "
             "generate within llama.max_position_embeddings = ", max_pos);
  Row row;
  row.handle = next_handle_++;
  row.prompt_length = p;
  row.max_new_tokens = max_new_tokens;
  row.capacity = std::min(max_pos, p + max_new_tokens);
  llama::KVCache cache = model_.llm->make_cache(1, row.capacity);
  llama::ForwardOptions lo;
  lo.attention_mask = at::ones({1, p}, at::TensorOptions().dtype(at::kLong));
  lo.cache = &cache;
  lo.last_logits_only = true;
  const llama::LlamaOutput pre = model_.llm->forward(embeds, lo);
  row.last_hidden = pre.final_hidden[0][p - 1];
  const int64_t token = pre.logits.select(1, 0).argmax(-1).to(at::kCPU).data_ptr<int64_t>()[0];
  const bool done = push_token(row, token, cache.length(0));
  tokens_.push_back(Token{row.handle, token, done});
  if (done) {
    finish(row);
    return row.handle;
  }
  if (cache_) cache_->append_rows(cache);
  else cache_.emplace(std::move(cache));
  rows_.push_back(std::move(row));
  return rows_.back().handle;
}

void DecodeBatch::step() {
  if (rows_.empty()) return;
  nn::AttentionModeGuard attention_mode(model_.config().m2sa.attention);
  at::NoGradGuard no_grad;
  const auto b = static_cast<int64_t>(rows_.size());
  const auto long_cpu = at::TensorOptions().dtype(at::kLong);
  at::Tensor ids = at::empty({b, 1}, long_cpu);
  for (int64_t k = 0; k < b; ++k) ids[k][0] = rows_[static_cast<std::size_t>(k)].output_ids.back();
  llama::ForwardOptions so;
  so.attention_mask = at::ones({b, 1}, long_cpu);
  so.cache = &*cache_;
  so.last_logits_only = true;
  const llama::LlamaOutput out = model_.llm->forward(model_.llm->embed(ids), so);
  ++steps_;
  const at::Tensor next = out.logits.select(1, 0).argmax(-1).to(at::kCPU);  // [B]
  const int64_t* nx = next.data_ptr<int64_t>();
  std::vector<int64_t> keep;
  std::vector<Row> kept;
  for (int64_t k = 0; k < b; ++k) {
    Row& row = rows_[static_cast<std::size_t>(k)];
    row.last_hidden = out.final_hidden[k][0];
    const bool done = push_token(row, nx[k], cache_->length(k));
    tokens_.push_back(Token{row.handle, nx[k], done});
    if (done) {
      finish(row);
    } else {
      keep.push_back(k);
      kept.push_back(std::move(row));
    }
  }
  rows_ = std::move(kept);
  if (keep.empty()) cache_.reset();
  else if (static_cast<int64_t>(keep.size()) < b) cache_->keep_rows(keep);
}

bool DecodeBatch::cancel(int64_t handle) {
  const auto it = std::find_if(rows_.begin(), rows_.end(), [&](const Row& r) { return r.handle == handle; });
  if (it == rows_.end()) return false;
  const auto k = static_cast<int64_t>(it - rows_.begin());
  std::vector<int64_t> keep;
  for (int64_t i = 0; i < static_cast<int64_t>(rows_.size()); ++i)
    if (i != k) keep.push_back(i);
  rows_.erase(it);
  if (keep.empty()) cache_.reset();
  else cache_->keep_rows(keep);
  return true;
}

std::vector<DecodeBatch::Token> DecodeBatch::take_tokens() { return std::exchange(tokens_, {}); }

std::vector<std::pair<int64_t, GenerationResult>> DecodeBatch::take_finished() { return std::exchange(finished_, {}); }

}  // namespace m2sa::m2sa_model
