// LLaMA decoder throughput: prefill tokens/s, KV-cached decode tokens/s, and decode by recomputing the whole
// sequence every step (what the reference does: M2SA forces use_cache=False, ../shared/spec/M2SA.md 5.3), with
// the speed-up of the cache printed as a ratio. Greedy decoding with random weights; both decoders must produce
// the same tokens.
//
// Configs: a small model, and 7B-width layers (hidden 4096, 32 heads, FFN 11008, vocab 32003) with only a few
// layers so it fits the CPU machines; fp32 and bf16; CUDA too when LibTorch has it.
// Usage: build/bench/bench_llama [--prompt N (48)] [--new N (12)] [--layers N (2)] [--cpu-only] [--quick]
// (the small model runs twice the prompt and new tokens)
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "m2sa/core/dtype.h"
#include "m2sa/core/runtime.h"
#include "m2sa/models/llama/llama_model.h"

using m2sa::llama::ForwardOptions;
using m2sa::llama::KVCache;
using m2sa::llama::LlamaConfig;
using m2sa::llama::LlamaForCausalLM;

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Case {
  std::string name;
  LlamaConfig config;
  int64_t prompt, new_tokens;
};

struct Timing {
  double prefill_s = 0, decode_s = 0, recompute_s = 0;
  bool same_tokens = false;
};

// Greedy decoding of `steps` tokens after `prompt` [1, P], with the cache; returns the generated ids.
std::vector<int64_t> decode_cached(const LlamaForCausalLM& m, const at::Tensor& prompt, int64_t steps, double* prefill_s,
                                   double* decode_s) {
  KVCache cache = m->make_cache(1, prompt.size(1) + steps);
  ForwardOptions opt;
  opt.cache = &cache;
  opt.last_logits_only = true;
  auto t0 = Clock::now();
  int64_t next = m->forward_ids(prompt, opt).logits.argmax(-1).item<int64_t>();  // .item() synchronises
  *prefill_s = seconds_since(t0);
  std::vector<int64_t> out{next};
  t0 = Clock::now();
  const auto ids = at::TensorOptions().dtype(at::kLong).device(prompt.device());
  for (int64_t s = 1; s < steps; ++s) {
    next = m->forward_ids(at::full({1, 1}, next, ids), opt).logits.argmax(-1).item<int64_t>();
    out.push_back(next);
  }
  *decode_s = seconds_since(t0);
  return out;
}

// The reference's way: every step re-runs the whole sequence without a cache.
std::vector<int64_t> decode_recompute(const LlamaForCausalLM& m, const at::Tensor& prompt, int64_t steps, double* decode_s) {
  at::Tensor seq = prompt;
  ForwardOptions opt;
  opt.last_logits_only = true;
  std::vector<int64_t> out;
  out.push_back(m->forward_ids(seq, opt).logits.argmax(-1).item<int64_t>());  // the prefill, not timed
  const auto t0 = Clock::now();
  for (int64_t s = 1; s < steps; ++s) {
    seq = at::cat({seq, at::full({1, 1}, out.back(), seq.options())}, 1);
    out.push_back(m->forward_ids(seq, opt).logits.argmax(-1).item<int64_t>());
  }
  *decode_s = seconds_since(t0);
  return out;
}

void run(const Case& c, const LlamaForCausalLM& m, double build_s) {
  const at::Tensor& w = m->lm_head->weight;
  const c10::Device device = w.device();
  at::NoGradGuard no_grad;
  at::manual_seed(1);
  const at::Tensor prompt =
      at::randint(0, c.config.vocab_size, {1, c.prompt}, at::TensorOptions().dtype(at::kLong).device(device));
  // Warm-up (first-call allocations, oneDNN kernel selection).
  {
    double a, b;
    decode_cached(m, prompt.narrow(1, 0, std::min<int64_t>(8, c.prompt)), 2, &a, &b);
  }
  Timing t;
  const auto cached = decode_cached(m, prompt, c.new_tokens, &t.prefill_s, &t.decode_s);
  const auto recomputed = decode_recompute(m, prompt, c.new_tokens, &t.recompute_s);
  t.same_tokens = cached == recomputed;
  const double steps = static_cast<double>(c.new_tokens - 1);
  std::printf("%-24s %-4s %-4s prompt %4lld new %3lld | prefill %8.1f tok/s | decode: cached %7.2f tok/s, "
              "recompute %7.2f tok/s, cache speed-up x%.2f | same tokens: %s | build %.1f s\n",
              c.name.c_str(), m2sa::precision_name(w.scalar_type()).c_str(), device.is_cuda() ? "cuda" : "cpu",
              static_cast<long long>(c.prompt), static_cast<long long>(c.new_tokens), c.prompt / t.prefill_s,
              steps / t.decode_s, steps / t.recompute_s, t.recompute_s / t.decode_s, t.same_tokens ? "yes" : "NO",
              build_s);
  std::fflush(stdout);
}

// Builds the model once (random init, fp32 on the CPU) and runs it in fp32, then in bf16.
void run_case(const Case& c, const c10::Device& device) {
  at::manual_seed(0);
  auto t0 = Clock::now();
  LlamaForCausalLM m(c.config);
  m->to(device);
  m->eval();
  run(c, m, seconds_since(t0));
  t0 = Clock::now();
  m->to(at::kBFloat16);
  run(c, m, seconds_since(t0));
}

int64_t arg_int(int argc, char** argv, const char* flag, int64_t fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], flag) == 0) return std::atoll(argv[i + 1]);
  return fallback;
}
bool has_flag(int argc, char** argv, const char* flag) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], flag) == 0) return true;
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  const m2sa::RuntimeInfo rt = m2sa::init_runtime();
  const bool quick = has_flag(argc, argv, "--quick");
  const int64_t prompt = arg_int(argc, argv, "--prompt", quick ? 16 : 48);
  const int64_t new_tokens = arg_int(argc, argv, "--new", quick ? 6 : 12);
  const int64_t layers = arg_int(argc, argv, "--layers", quick ? 1 : 2);
  std::printf("bench_llama: intra-op threads %d, malloc hugetlb %s\n", rt.threads, rt.hugetlb_malloc ? "on" : "off");

  LlamaConfig small;
  small.vocab_size = 32003;
  small.hidden_size = 512;
  small.intermediate_size = 1376;
  small.num_hidden_layers = 4;
  small.num_attention_heads = 8;
  small.max_position_embeddings = 2048;
  LlamaConfig wide = LlamaConfig::llama_7b();
  wide.num_hidden_layers = layers;

  std::vector<Case> cases{
      {"small (512 x 4 layers)", small, 2 * prompt, 2 * new_tokens},
      {"7B width x " + std::to_string(layers) + " layer(s)", wide, prompt, new_tokens},
  };
  std::vector<c10::Device> devices{c10::Device(at::kCPU)};
  if (at::hasCUDA() && !has_flag(argc, argv, "--cpu-only")) {
    // fp32 without TF32, as the parity tests run (fixtures README).
    at::globalContext().setAllowTF32CuBLAS(false);
    devices.emplace_back(at::kCUDA, 0);
  }
  for (const auto& device : devices) {
    for (const auto& c : cases) run_case(c, device);
    if (device.is_cuda()) {
      // The GPU can afford more: 8 layers of 7B width, a 512-token prompt, 64 new tokens.
      Case big{"7B width x 8 layers", wide, 512, 64};
      big.config.num_hidden_layers = 8;
      run_case(big, device);
    }
  }
  return 0;
}
