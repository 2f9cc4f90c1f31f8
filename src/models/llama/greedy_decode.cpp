#include "m2sa/models/llama/greedy_decode.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <spdlog/spdlog.h>

#include <memory>

#include "m2sa/core/error.h"
#include "m2sa/models/llama/decode_step_graph.h"
#include "m2sa/nn/async_readback.h"

namespace m2sa::llama {

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::kEos: return "eos";
    case FinishReason::kMaxNewTokens: return "max_new_tokens";
    case FinishReason::kContextFull: return "context_full";
  }
  return "unknown";
}

GreedyDecodeOutput greedy_decode(const LlamaForCausalLM& llm, KVCache& cache, const at::Tensor& first_logits,
                                 const GreedyDecodeOptions& opt) {
  const int64_t k_total = cache.batch_size();
  M2SA_CHECK(first_logits.defined() && first_logits.dim() == 3 && first_logits.size(0) == k_total &&
                 first_logits.size(1) == 1,
             "greedy_decode: first_logits must be [", k_total, ", 1, V], got ",
             first_logits.defined() ? c10::str(first_logits.sizes()) : std::string("undefined"));
  M2SA_CHECK(opt.max_new_tokens >= 1, "greedy_decode: max_new_tokens must be >= 1, got ", opt.max_new_tokens);
  at::NoGradGuard no_grad;
  const int64_t capacity = cache.capacity();
  const auto kk = [](int64_t k) { return static_cast<std::size_t>(k); };
  GreedyDecodeOutput out;
  out.output_ids.resize(kk(k_total));
  out.finish_reasons.assign(kk(k_total), FinishReason::kEos);
  std::vector<bool> active(kk(k_total), true);
  at::Tensor next = first_logits.select(1, 0).argmax(-1);  // [K] on the device
  bool use_graph = opt.cuda_graph && DecodeStepGraph::supported(next.device());
  std::unique_ptr<DecodeStepGraph> graph;
  nn::AsyncReadback pending(next);
  while (true) {
    // The rows fed with the ids in flight: those that do not end after them whatever they are.
    std::vector<bool> feed(kk(k_total), false);
    bool any_fed = false, all_fed = true;
    for (int64_t k = 0; k < k_total; ++k) {
      feed[kk(k)] = active[kk(k)] && static_cast<int64_t>(out.output_ids[kk(k)].size()) + 1 < opt.max_new_tokens &&
                    cache.length(k) + 1 < capacity;
      any_fed = any_fed || feed[kk(k)];
      all_fed = all_fed && feed[kk(k)];
    }
    at::Tensor following;
    nn::AsyncReadback following_read;
    // Once a row is held, the batch shape changes: the graph (captured for every row decoding) is dropped.
    if (!all_fed) graph.reset();
    if (all_fed && (use_graph || opt.fixed_shape)) {
      at::Tensor hidden;
      if (graph) {
        graph->replay();
        following = graph->next().clone();
        hidden = graph->hidden().clone();
      } else if (use_graph) {
        graph = std::make_unique<DecodeStepGraph>(llm, cache, next);  // runs this step, then captures it
        following = graph->next().clone();
        hidden = graph->hidden().clone();
        if (!graph->captured()) {
          spdlog::warn("greedy_decode: CUDA graph capture failed, decoding eagerly: {}", graph->failure());
          graph.reset();
          use_graph = false;
        }
      } else {
        const FixedShapeStep s = fixed_shape_step(llm, cache, next);
        following = s.next;
        hidden = s.hidden;
      }
      out.step_hidden.push_back(hidden);
      following_read = nn::AsyncReadback(following);
      ++out.steps;
    } else if (any_fed) {
      ForwardOptions so;
      if (!all_fed) {
        so.attention_mask = at::zeros({k_total, 1}, at::kLong);
        for (int64_t k = 0; k < k_total; ++k)
          if (feed[kk(k)]) so.attention_mask[k][0] = 1;
      }
      so.cache = &cache;
      so.last_logits_only = true;
      LlamaOutput step = llm->forward(llm->embed_generated(next.view({k_total, 1})), so);
      out.step_hidden.push_back(step.final_hidden);
      following = step.logits.select(1, 0).argmax(-1);
      following_read = nn::AsyncReadback(following);
      ++out.steps;
    }
    const at::Tensor ids = pending.wait();
    const int64_t* nx = ids.data_ptr<int64_t>();
    bool any = false;
    for (int64_t k = 0; k < k_total; ++k) {
      if (!active[kk(k)]) continue;
      std::vector<int64_t>& o = out.output_ids[kk(k)];
      o.push_back(nx[k]);
      FinishReason& why = out.finish_reasons[kk(k)];
      if (nx[k] == opt.eos_token_id) {
        why = FinishReason::kEos;
      } else if (static_cast<int64_t>(o.size()) >= opt.max_new_tokens) {
        why = FinishReason::kMaxNewTokens;
      } else if (!feed[kk(k)]) {
        why = FinishReason::kContextFull;
      } else {
        any = true;
        continue;
      }
      active[kk(k)] = false;
    }
    if (!any) break;
    next = following;
    pending = std::move(following_read);
  }
  return out;
}

}  // namespace m2sa::llama
