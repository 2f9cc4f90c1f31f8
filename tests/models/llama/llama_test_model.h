#pragma once
// A tiny LLaMA with weights of a scale that gives well-separated logits (greedy decoding without near-ties), for the
// cache and decoding tests.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "m2sa/models/llama/llama_model.h"

namespace m2sa::llama::test_model {

inline LlamaForCausalLM separated_logits_model(const LlamaConfig& config, uint64_t seed) {
  at::manual_seed(seed);
  LlamaForCausalLM m(config);
  at::NoGradGuard no_grad;
  for (auto& p : m->parameters()) {
    if (p.dim() == 1) p.uniform_(0.5, 1.5);
    else p.normal_(0.0, 0.25);
  }
  m->eval();
  return m;
}

}  // namespace m2sa::llama::test_model
