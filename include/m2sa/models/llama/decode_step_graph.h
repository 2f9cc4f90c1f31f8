#pragma once
// A decoding step of one token per row captured in a CUDA graph (issue 15): the ~45 kernel launches per layer of an
// eager step become one graph launch. The captured step is the fixed-shape one (ForwardOptions::fixed_shape: static
// input ids, positions and cache slots read from the cache's device lengths), and it ends by writing its argmax into
// its own input buffer, so replays chain without the host. greedy_decode uses it while the batch shape is fixed
// (every row decoding) and falls back to eager steps otherwise, or when capture fails.
//
// Only a CUDA build of LibTorch on a CUDA device captures; elsewhere supported() is false. The CPU tests check the
// fixed-shape step against the ordinary one; the capture itself runs in scripts/gpu-check.sh.
#include <ATen/core/Tensor.h>

#include <memory>
#include <string>

#include "m2sa/models/llama/kv_cache.h"
#include "m2sa/models/llama/llama_model.h"

namespace m2sa::llama {

struct FixedShapeStep {
  at::Tensor next;    // [K] argmax
  at::Tensor hidden;  // [K, 1, H] final hidden states
};

// One fixed-shape step, eagerly, on `ids` [K] (what the graph captures; also the CPU check of it). Advances the
// cache's device and host lengths.
FixedShapeStep fixed_shape_step(const LlamaForCausalLM& llm, KVCache& cache, const at::Tensor& ids);

class DecodeStepGraph {
 public:
  // A CUDA LibTorch and a CUDA device.
  static bool supported(const c10::Device& device);

  // Runs one fixed-shape step eagerly on `ids` [K] (a real step, and the warm-up a capture needs; its outputs are
  // next() / hidden() until the first replay), then captures the same step. If capture fails, captured() is false
  // and failure() says why; the warm-up step's outputs are still valid.
  DecodeStepGraph(const LlamaForCausalLM& llm, KVCache& cache, const at::Tensor& ids);
  ~DecodeStepGraph();
  DecodeStepGraph(const DecodeStepGraph&) = delete;
  DecodeStepGraph& operator=(const DecodeStepGraph&) = delete;

  bool captured() const { return captured_ != nullptr; }
  const std::string& failure() const { return failure_; }
  // The next step, fed with the last step's argmax; advances the cache's host lengths.
  void replay();
  // The last step's argmax [K] and final hidden states [K, 1, H]: static buffers that the next replay overwrites
  // (copy or read them, in stream order, before it).
  const at::Tensor& next() const { return next_; }
  const at::Tensor& hidden() const { return hidden_; }

 private:
  struct Captured;
  KVCache& cache_;
  std::unique_ptr<Captured> captured_;
  std::string failure_;
  at::Tensor next_, hidden_;
};

}  // namespace m2sa::llama
