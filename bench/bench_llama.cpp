// LLaMA decoding throughput through the inference path (fused projections, llama/greedy_decode.h: no host sync
// per token), beside the device's copy bandwidth measured in the same run (bench/physical_limits.h):
//   prefill tok/s; decode tok/s at batch 1 and 4; weight GB/s read by decoding (every weight but the embedding
//   table is read once per step) and that rate as a fraction of the copy rate, the bound of memory-bound decoding.
// Also the reference's way (no cache: every step re-runs the whole sequence; M2SA forces use_cache=False, spec 5.3)
// at batch 1 with --recompute, which must produce the same tokens.
//
// Shapes: the 7B LLaMA (hidden 4096, 32 heads, FFN 11008, vocab 32003) with --layers decoder layers (default: all 32
// on CUDA, 2 on the CPU, which has 24 GB and 2 cores); random weights (N(0, 0.02), norms 1) allocated directly in the
// benchmark dtype on the device.
//
// Usage: build/bench/bench_llama [--layers N] [--prompt N (128)] [--new N (32)] [--dtypes bf16,fp32 (bf16)]
//                                [--batches 1,4] [--devices cpu,cuda] [--unfused] [--recompute] [--quick]
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/core/grad_mode.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "m2sa/core/dtype.h"
#include "m2sa/core/error.h"
#include "m2sa/core/runtime.h"
#include "m2sa/models/llama/greedy_decode.h"
#include "m2sa/models/llama/llama_model.h"
#include "m2sa/models/m2sa/m2sa_checkpoint.h"
#include "m2sa/nn/init.h"
#include "physical_limits.h"

namespace {

using m2sa::llama::LlamaConfig;
using m2sa::llama::LlamaForCausalLM;
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Options {
  int64_t layers = -1, prompt = 128, new_tokens = 32;
  std::vector<std::string> dtypes{"bf16"}, devices{"cpu", "cuda"};
  std::vector<int64_t> batches{1, 4};
  bool unfused = false, recompute = false;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) m2sa::fail("bench_llama: ", a, " needs a value");
      return argv[++i];
    };
    if (a == "--layers") o.layers = std::atoll(value().c_str());
    else if (a == "--prompt") o.prompt = std::max<int64_t>(1, std::atoll(value().c_str()));
    else if (a == "--new") o.new_tokens = std::max<int64_t>(2, std::atoll(value().c_str()));
    else if (a == "--dtypes") o.dtypes = m2sa::bench::split_list(value());
    else if (a == "--devices") o.devices = m2sa::bench::split_list(value());
    else if (a == "--batches") {
      o.batches.clear();
      for (const auto& b : m2sa::bench::split_list(value())) o.batches.push_back(std::max<int64_t>(1, std::atoll(b.c_str())));
    } else if (a == "--unfused") o.unfused = true;
    else if (a == "--recompute") o.recompute = true;
    else if (a == "--quick") {
      o.prompt = 16;
      o.new_tokens = 6;
      o.batches = {1};
    } else m2sa::fail("bench_llama: unknown argument ", a, " (see the usage at the top of bench/bench_llama.cpp)");
  }
  return o;
}

// The model in `dtype` on `device`, built shape-only and filled there (no fp32 host copy of a 7B model).
LlamaForCausalLM random_model(const LlamaConfig& c, at::ScalarType dtype, const c10::Device& device) {
  LlamaForCausalLM m{nullptr};
  {
    m2sa::nn::ShapeOnlyScope shape_only;
    m = LlamaForCausalLM(c);
  }
  m2sa::m2sa_model::allocate_shape_only(*m, dtype, device);
  at::NoGradGuard no_grad;
  at::manual_seed(0);
  for (auto& p : m->named_parameters()) {
    p.value().set_requires_grad(false);
    if (p.key().find("norm") != std::string::npos) p.value().fill_(1.0);
    else p.value().normal_(0.0, 0.02);
  }
  m->eval();
  return m;
}

// Bytes a decoding step reads: every weight except the embedding table (one row per sequence).
double weight_bytes_per_step(const LlamaForCausalLM& m) {
  double bytes = 0;
  for (const auto& p : m->named_parameters())
    if (p.key() != "model.embed_tokens.weight")
      bytes += static_cast<double>(p.value().numel()) * static_cast<double>(p.value().element_size());
  return bytes;
}

struct Result {
  double prefill_s = 0, decode_s = 0;
  int64_t steps = 0;
  std::vector<std::vector<int64_t>> tokens;
};

Result decode(const LlamaForCausalLM& m, const at::Tensor& prompts, int64_t new_tokens) {
  at::NoGradGuard no_grad;
  const int64_t k = prompts.size(0);
  Result r;
  m2sa::llama::KVCache cache = m->make_cache(k, prompts.size(1) + new_tokens);
  m2sa::llama::ForwardOptions opt;
  opt.cache = &cache;
  opt.last_logits_only = true;
  auto t0 = Clock::now();
  const at::Tensor logits = m->forward_ids(prompts, opt).logits;
  m2sa::bench::sync(logits);
  r.prefill_s = seconds_since(t0);
  m2sa::llama::GreedyDecodeOptions go;
  go.max_new_tokens = new_tokens;
  go.eos_token_id = -1;  // never: every row decodes new_tokens
  t0 = Clock::now();
  m2sa::llama::GreedyDecodeOutput out = m2sa::llama::greedy_decode(m, cache, logits, go);
  r.decode_s = seconds_since(t0);  // greedy_decode returns once the host has read the last ids
  r.steps = out.steps;
  r.tokens = std::move(out.output_ids);
  return r;
}

// The reference's way at batch 1: every step re-runs the whole sequence without a cache.
std::vector<int64_t> decode_recompute(const LlamaForCausalLM& m, const at::Tensor& prompt, int64_t steps, double* s) {
  at::NoGradGuard no_grad;
  at::Tensor seq = prompt;
  m2sa::llama::ForwardOptions opt;
  opt.last_logits_only = true;
  std::vector<int64_t> out{m->forward_ids(seq, opt).logits.argmax(-1).item<int64_t>()};
  const auto t0 = Clock::now();
  for (int64_t i = 1; i < steps; ++i) {
    seq = at::cat({seq, at::full({1, 1}, out.back(), seq.options())}, 1);
    out.push_back(m->forward_ids(seq, opt).logits.argmax(-1).item<int64_t>());
  }
  *s = seconds_since(t0);
  return out;
}

void run_device(const Options& o, const c10::Device& device) {
  LlamaConfig c = LlamaConfig::llama_7b();
  c.num_hidden_layers = o.layers > 0 ? o.layers : (device.is_cuda() ? c.num_hidden_layers : 2);
  const double copy_gbs = m2sa::bench::copy_bandwidth_gbs(device);
  std::printf("\n%s: copy bandwidth %.1f GB/s (read + write, 1 GiB, best of 5); model: 7B shape, %lld layer(s), "
              "prompt %lld, %lld new tokens\n",
              device.str().c_str(), copy_gbs, static_cast<long long>(c.num_hidden_layers),
              static_cast<long long>(o.prompt), static_cast<long long>(o.new_tokens));
  std::printf("| dtype | proj    | batch | prefill tok/s | decode tok/s (per seq) | decode tok/s (all) | weights GB/s | "
              "of copy |\n|-------|---------|-------|---------------|------------------------|--------------------|"
              "--------------|---------|\n");
  for (const std::string& dn : o.dtypes) {
    const at::ScalarType dtype = m2sa::parse_precision(dn);
    const auto build0 = Clock::now();
    LlamaForCausalLM m = random_model(c, dtype, device);
    const double build_s = seconds_since(build0);
    const double bytes = weight_bytes_per_step(m);
    for (const bool fused : {false, true}) {
      if (!fused && !o.unfused) continue;
      if (fused && m->fuse_projections() != 2 * c.num_hidden_layers) m2sa::fail("bench_llama: fusing failed");
      at::manual_seed(1);
      for (int64_t k : o.batches) {
        const at::Tensor prompts = at::randint(0, c.vocab_size, {k, o.prompt},
                                               at::TensorOptions().dtype(at::kLong).device(device));
        (void)decode(m, prompts.narrow(1, 0, std::min<int64_t>(8, o.prompt)), 3);  // warm-up
        const Result r = decode(m, prompts, o.new_tokens);
        const double steps_per_s = static_cast<double>(r.steps) / r.decode_s;
        const double gbs = bytes * steps_per_s / 1e9;
        std::printf("| %-5s | %-7s | %5lld | %13.1f | %22.2f | %18.2f | %12.1f | %6.1f%% |\n", dn.c_str(),
                    fused ? "fused" : "unfused", static_cast<long long>(k),
                    static_cast<double>(k * o.prompt) / r.prefill_s, steps_per_s, steps_per_s * static_cast<double>(k),
                    gbs, 100.0 * gbs / copy_gbs);
        std::fflush(stdout);
        if (o.recompute && k == 1) {
          double rs = 0;
          const auto ref = decode_recompute(m, prompts, o.new_tokens, &rs);
          std::printf("|       | reference (no cache, recompute every step) | %.2f tok/s | same tokens: %s |\n",
                      static_cast<double>(o.new_tokens - 1) / rs, ref == r.tokens[0] ? "yes" : "NO");
        }
      }
    }
    std::printf("(%s: %.2f GB of weights read per step; built in %.1f s)\n", dn.c_str(), bytes / 1e9, build_s);
  }
}

}  // namespace

int main(int argc, char** argv) {
  m2sa::reexec_with_malloc_tunables(argc, argv);  // as the CLI does (TOOLCHAIN.md trap 3)
  try {
    const m2sa::RuntimeInfo rt = m2sa::init_runtime();
    const Options o = parse(argc, argv);
    std::printf("bench_llama: intra-op threads %d, malloc hugetlb %s\n", rt.threads, rt.hugetlb_malloc ? "on" : "off");
    for (const std::string& d : o.devices) {
      if (d != "cpu" && d != "cuda") m2sa::fail("bench_llama: --devices takes cpu and/or cuda, got '", d, "'");
      if (d == "cuda" && !at::hasCUDA()) continue;
      if (d == "cuda") at::globalContext().setAllowTF32CuBLAS(false);
      run_device(o, d == "cuda" ? c10::Device(at::kCUDA, 0) : c10::Device(at::kCPU));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_llama: %s\n", e.what());
    return 1;
  }
  return 0;
}
