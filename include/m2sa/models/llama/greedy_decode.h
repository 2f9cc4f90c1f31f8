#pragma once
// Greedy decoding of a batch of prompts already prefilled into a KV cache, with no host sync per token in the
// steady state (issue 15). The ids of step s stay on the device and feed step s + 1 directly; the host reads them one
// step late (nn::AsyncReadback), after step s + 1 is queued, to append them and check for EOS. A row that turns out
// to have ended with EOS has been fed one speculative step whose results are never read; ends the host knows
// without the ids (max_new_tokens, a full cache) are not speculated on. While every row is fed no mask is passed
// (SDPA may take its flash kernel) and the cache advances on the device alone; a finished row is held in place
// (mask 0). Every row keeps one spare cache slot, so the batched step can always write. On CUDA the steps of a fixed
// batch shape replay a CUDA graph.
//
// M2SAForCausalLM::generate and bench_llama both decode through this function.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "m2sa/models/llama/kv_cache.h"
#include "m2sa/models/llama/llama_model.h"

namespace m2sa::llama {

enum class FinishReason {
  kEos,           // generated the EOS token (kept as the last output id)
  kMaxNewTokens,  // reached max_new_tokens
  kContextFull,   // the cache (at most llama.max_position_embeddings) is full
};
const char* finish_reason_name(FinishReason reason);  // "eos", "max_new_tokens", "context_full"

struct GreedyDecodeOptions {
  int64_t max_new_tokens = 512;
  int64_t eos_token_id = 2;
  // While every row decodes: on CUDA, replay the step as a CUDA graph (llama/decode_step_graph.h; eager again once a
  // row ends, or if capture fails); elsewhere, with fixed_shape, run the graph's fixed-shape step eagerly (tests).
  bool cuda_graph = true;
  bool fixed_shape = false;
};

struct GreedyDecodeOutput {
  std::vector<std::vector<int64_t>> output_ids;  // per row: the generated ids (the EOS included when reached)
  std::vector<FinishReason> finish_reasons;      // per row
  // Per step: final_hidden [K, 1, H] of the tokens fed at that step (output id s of every row at step s).
  std::vector<at::Tensor> step_hidden;
  int64_t steps = 0;                             // single-token forward passes (a speculative last one included)
};

// first_logits: [K, 1, V] logits of each row's last prompt token; `cache` holds the K prompts (capacity at least
// each prompt + 1). Decodes until every row has ended.
GreedyDecodeOutput greedy_decode(const LlamaForCausalLM& llm, KVCache& cache, const at::Tensor& first_logits,
                                 const GreedyDecodeOptions& options);

}  // namespace m2sa::llama
