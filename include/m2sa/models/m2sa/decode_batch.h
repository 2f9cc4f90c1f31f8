#pragma once
// Continuous batching on the KV cache: greedy decoding of a changing set of sequences, one single-token step at a
// time for all of them. A new prompt is prefilled alone (its own batch-1 pass and cache, exactly as generate() does
// for one prompt), then its cache rows join the running batch before the next step; a sequence that finishes
// (EOS, max_new_tokens, context) leaves the batch after the step that finished it. This is generate()'s loop cut
// open, for a server whose requests arrive while others decode (serve/scheduler.h).
//
// One sequence decoded alone here gives bit-identical ids and [SEG] embeddings to generate() with that one prompt;
// in a batch, the results equal those up to floating-point batching noise (as generate() with several prompts).
//
// Cost: joining and leaving copy the batch's KV buffers (KVCache::append_rows / keep_rows), once per change of the
// batch, not per step. Each step reads the chosen tokens on the host (one sync per step, as generate()).
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "m2sa/models/llama/kv_cache.h"
#include "m2sa/models/m2sa/m2sa_model.h"

namespace m2sa::m2sa_model {

class DecodeBatch {
 public:
  // The model must outlive this object. eos_token_id: </s>.
  DecodeBatch(const M2SAForCausalLMImpl& model, int64_t eos_token_id);

  // A token chosen for a sequence, in the order of the sequence's output.
  struct Token {
    int64_t handle = 0;
    int64_t id = 0;
    bool finished = false;  // this token ended the sequence (its result is in take_finished())
  };

  // Prefills one prompt (ids with exactly one -200) with its image's features ([1, N, H] or [N, H],
  // image_features() of that image) and picks its first token. Returns the new sequence's handle; its first token
  // comes back from the next take_tokens(). A sequence whose first token already ends it never joins the batch.
  int64_t add(const std::vector<int64_t>& ids, const at::Tensor& image_features, int64_t max_new_tokens);
  // One single-token step for every running sequence (nothing when none runs).
  void step();
  // Removes a running sequence (e.g. its request timed out); false if it is not running.
  bool cancel(int64_t handle);

  // Tokens chosen since the last call (by add() and step()), in order.
  std::vector<Token> take_tokens();
  // Sequences finished since the last call, with their results (seg_embeddings in the model's dtype and device;
  // masks are left to the caller), in finishing order.
  std::vector<std::pair<int64_t, GenerationResult>> take_finished();

  int64_t running() const { return static_cast<int64_t>(rows_.size()); }
  int64_t steps() const { return steps_; }  // single-token steps run so far

 private:
  struct Row {
    int64_t handle = 0;
    int64_t prompt_length = 0;
    int64_t capacity = 0;  // min(max_position_embeddings, prompt + max_new_tokens), as generate() for one prompt
    int64_t max_new_tokens = 0;
    std::vector<int64_t> output_ids;
    std::vector<at::Tensor> seg_states;  // the final hidden state that chose each [SEG]
    at::Tensor last_hidden;              // [H]: the state whose logits chose the latest token
  };
  // Appends `token` to `row` (given its cache length); true when the sequence ended with it.
  bool push_token(Row& row, int64_t token, int64_t cache_length);
  void finish(Row& row);

  const M2SAForCausalLMImpl& model_;
  int64_t eos_;
  int64_t next_handle_ = 1;
  int64_t steps_ = 0;
  std::vector<Row> rows_;            // running sequences, in cache row order
  std::optional<llama::KVCache> cache_;  // rows_.size() rows (empty when nothing runs)
  std::vector<Token> tokens_;
  std::vector<std::pair<int64_t, GenerationResult>> finished_;
};

}  // namespace m2sa::m2sa_model
