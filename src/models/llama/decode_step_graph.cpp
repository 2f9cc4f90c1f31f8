#include "m2sa/models/llama/decode_step_graph.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "m2sa/core/error.h"

#if M2SA_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace m2sa::llama {

namespace {

// The fixed-shape step on `ids` [K, 1], without the host lengths; writes its argmax back into `ids` when `chain`
// (the captured version).
FixedShapeStep run_fixed_shape(const LlamaForCausalLM& llm, KVCache& cache, const at::Tensor& ids, bool chain) {
  ForwardOptions o;
  o.cache = &cache;
  o.last_logits_only = true;
  o.fixed_shape = true;
  LlamaOutput out = llm->forward(llm->embed_generated(ids), o);
  FixedShapeStep s{out.logits.select(1, 0).argmax(-1), out.final_hidden};
  if (chain) ids.copy_(s.next.view_as(ids));
  return s;
}

}  // namespace

FixedShapeStep fixed_shape_step(const LlamaForCausalLM& llm, KVCache& cache, const at::Tensor& ids) {
  at::NoGradGuard no_grad;
  FixedShapeStep s = run_fixed_shape(llm, cache, ids.reshape({cache.batch_size(), 1}), /*chain=*/false);
  cache.advance_host_lengths(1);
  return s;
}

#if M2SA_WITH_CUDA

struct DecodeStepGraph::Captured {
  at::cuda::CUDAGraph graph;
  at::Tensor ids;           // [K, 1] static input
  at::Tensor next, hidden;  // the captured step's outputs (the graph's private pool; every replay rewrites them)
};

bool DecodeStepGraph::supported(const c10::Device& device) { return device.is_cuda(); }

DecodeStepGraph::DecodeStepGraph(const LlamaForCausalLM& llm, KVCache& cache, const at::Tensor& ids)
    : cache_(cache), captured_(std::make_unique<Captured>()) {
  M2SA_CHECK(supported(ids.device()), "DecodeStepGraph: needs a CUDA device, got ", ids.device());
  at::NoGradGuard no_grad;
  const int64_t k = cache.batch_size();
  captured_->ids = ids.reshape({k, 1}).clone();
  // PyTorch's rule for capture: warm up on a side stream (cuBLAS handles and workspaces are made outside the
  // capture), capture on a side stream, and order both against the caller's stream with events.
  const c10::cuda::CUDAStream caller = c10::cuda::getCurrentCUDAStream(ids.device().index());
  const c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(false, ids.device().index());
  at::cuda::CUDAEvent before, after;
  before.record(caller);
  before.block(side);
  {
    const c10::cuda::CUDAStreamGuard guard(side);
    const FixedShapeStep first = run_fixed_shape(llm, cache, captured_->ids, /*chain=*/true);
    next_ = first.next.clone();
    hidden_ = first.hidden.clone();
    cache.advance_host_lengths(1);
    // Capturing runs nothing: if it fails, the cache holds exactly the warm-up step, whose outputs stay valid.
    try {
      captured_->graph.capture_begin();
      try {
        const FixedShapeStep graph_out = run_fixed_shape(llm, cache, captured_->ids, /*chain=*/true);
        captured_->next = graph_out.next;
        captured_->hidden = graph_out.hidden;
      } catch (...) {
        try {
          captured_->graph.capture_end();
        } catch (...) {
        }
        throw;
      }
      captured_->graph.capture_end();
    } catch (const std::exception& e) {
      failure_ = e.what();
      captured_.reset();
    }
  }
  after.record(side);
  after.block(caller);
}

void DecodeStepGraph::replay() {
  M2SA_CHECK(captured_, "DecodeStepGraph: nothing was captured (", failure_, ")");
  cache_.check_room(1);
  captured_->graph.replay();
  cache_.advance_host_lengths(1);
  next_ = captured_->next;
  hidden_ = captured_->hidden;
}

#else

struct DecodeStepGraph::Captured {};

bool DecodeStepGraph::supported(const c10::Device&) { return false; }

DecodeStepGraph::DecodeStepGraph(const LlamaForCausalLM&, KVCache& cache, const at::Tensor&) : cache_(cache) {
  fail("DecodeStepGraph: this LibTorch has no CUDA");
}

void DecodeStepGraph::replay() { fail("DecodeStepGraph: this LibTorch has no CUDA"); }

#endif

DecodeStepGraph::~DecodeStepGraph() = default;

}  // namespace m2sa::llama
