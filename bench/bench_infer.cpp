// End-to-end `m2sa infer` latency split into its stages (../shared/spec/M2SA.md 5.4): preprocessing, CLIP (+
// mm_projector), the prompt pass (prefill), greedy decoding (llama/greedy_decode.h), the SAM image encoder, and mask
// decoding (prompt encoder + mask decoder + upsampling to the original size) for `--targets` [SEG] prompts. The
// default is issue 15's goal query: a 30-token answer with 3 masks. Random weights: the decoding runs exactly `--new`
// steps (EOS is set to a token id outside what is compared, see below), and the [SEG] prompts are random vectors,
// so every stage runs whatever a random model would answer. The projections are fused as `m2sa infer` loads them.
//
// Cases: the tiny config (configs/tiny.json) on the CPU in fp32 and bf16 (--config-cpu PATH adds another CPU case,
// e.g. a model with --llm-layers); with CUDA, also the 7B config (configs/m2sa-7b.json, SAM ViT-H + CLIP ViT-L/14 +
// LLaMA-7B) in bf16, allocated directly on the GPU (--llm-layers N builds fewer LLaMA layers).
// The table ends with the sum of the stages and the critical path: on CUDA the SAM encoder runs on a side stream
// beside CLIP, prefill and decoding, so the path is preprocess + max(SAM, CLIP + prefill + decode) + masks.
// Usage: build/bench/bench_infer [--reps N (3)] [--new N (30)] [--targets N (3)] [--image HxW (480x640)]
//                                [--cpu-only] [--llm-layers N] [--config PATH] [--config-cpu PATH]
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "m2sa/core/dtype.h"
#include "m2sa/core/error.h"
#include "m2sa/core/runtime.h"
#include "m2sa/infer/predictor.h"
#include "m2sa/models/m2sa/m2sa_checkpoint.h"
#include "m2sa/models/m2sa/m2sa_config.h"
#include "m2sa/models/m2sa/m2sa_model.h"
#include "m2sa/nn/init.h"
#include "m2sa/text/tokenizer.h"

namespace {

using Clock = std::chrono::steady_clock;
using m2sa::infer::Predictor;
namespace mm = m2sa::m2sa_model;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Waits for the device (a scalar copy to the host).
void sync(const at::Tensor& t) {
  if (t.defined() && t.numel() > 0 && !t.is_cpu()) (void)t.reshape({-1}).slice(0, 0, 1).to(at::kCPU);
}

const char* arg_value(int argc, char** argv, const char* name) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  return nullptr;
}
bool has_flag(int argc, char** argv, const char* name) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return true;
  return false;
}

struct Stages {
  double preprocess = 0, clip = 0, prefill = 0, decode = 0, sam = 0, masks = 0;
  int64_t prompt_tokens = 0, new_tokens = 0;
  double total() const { return preprocess + clip + prefill + decode + sam + masks; }
};

struct Case {
  std::string name;
  mm::M2SAConfig config;
  at::ScalarType dtype;
  c10::Device device;
};

// One inference with each stage timed separately.
Stages run_once(const Predictor& p, const at::Tensor& rgb, const std::vector<int64_t>& prompt, int64_t new_tokens,
                int64_t targets) {
  at::NoGradGuard no_grad;
  const mm::M2SAForCausalLMImpl& m = *p.model();
  Stages s;
  auto t0 = Clock::now();
  const mm::ImageBatch images = p.preprocess({rgb});
  s.preprocess = seconds_since(t0);

  t0 = Clock::now();
  const at::Tensor feats = m.image_features(images.clip_images.to(m.device(), m.dtype()));
  sync(feats);
  s.clip = seconds_since(t0);

  mm::GenerationRequest req;
  req.images = images;
  req.image_features = feats;
  req.prompts = {mm::GenerationPrompt{prompt, 0}};
  mm::GenerationOptions go;
  go.max_new_tokens = new_tokens;
  // A random model may emit </s> at any step; the id of an unused byte token makes every run decode the same number
  // of steps (the stop test costs the same for any id).
  go.eos_token_id = 3;
  go.compute_masks = false;
  const mm::GenerationOutput gen = m.generate(req, go);
  s.prefill = gen.timings.prefill_s;
  s.decode = gen.timings.decode_s;
  s.prompt_tokens = gen.results[0].prompt_length;
  s.new_tokens = static_cast<int64_t>(gen.results[0].output_ids.size());

  t0 = Clock::now();
  const mm::SamFeatures sam = m.sam_features(images.sam_images.to(m.device(), m.dtype()));
  sync(sam.neck);
  s.sam = seconds_since(t0);

  t0 = Clock::now();
  const at::Tensor prompts =
      at::randn({targets, m.config().m2sa.out_dim}, at::TensorOptions().dtype(m.dtype()).device(m.device()));
  const at::Tensor masks = m.decode_masks(prompts, sam, 0, images.resized_hw[0], images.original_hw[0]);
  sync(masks);
  s.masks = seconds_since(t0);
  return s;
}

void run_case(const Case& c, const m2sa::Tokenizer& tok, const at::Tensor& rgb, int reps, int64_t new_tokens,
              int64_t targets) {
  std::printf("\n== %s: %s on %s ==\n", c.name.c_str(), m2sa::precision_name(c.dtype).c_str(), c.device.str().c_str());
  std::fflush(stdout);
  auto t0 = Clock::now();
  at::manual_seed(0);
  // Shape-only, then allocated in the benchmark dtype on the device and filled there (no fp32 host copy of 7B):
  // weights N(0, 0.02), norms 1, biases 0.
  mm::M2SAForCausalLM model{nullptr};
  {
    m2sa::nn::ShapeOnlyScope shape_only;
    model = mm::M2SAForCausalLM(c.config);
  }
  mm::allocate_shape_only(*model, c.dtype, c.device);
  {
    at::NoGradGuard no_grad;
    for (auto& p : model->named_parameters()) {
      p.value().set_requires_grad(false);
      const std::string& k = p.key();
      if (k.find("norm") != std::string::npos && k.find(".weight") != std::string::npos) p.value().fill_(1.0);
      else if (p.value().dim() == 1) p.value().zero_();
      else p.value().normal_(0.0, 0.02);
    }
  }
  model->eval();
  const int64_t fused = model->llm->fuse_projections();
  std::printf("model built in %.1f s (%lld projection groups fused)\n", seconds_since(t0), static_cast<long long>(fused));
  const Predictor p(model, tok);
  const std::vector<int64_t> prompt = p.prompt_ids(Predictor::prompt_dialog(
      "To maintain a computer at an elevated position, which part of the furniture aids in this purpose? Please "
      "output segmentation mask."));
  run_once(p, rgb, prompt, std::min<int64_t>(new_tokens, 4), targets);  // warm-up (allocator, oneDNN kernels)
  std::vector<Stages> runs;
  for (int r = 0; r < reps; ++r) runs.push_back(run_once(p, rgb, prompt, new_tokens, targets));
  auto median = [&](double Stages::*f) {
    std::vector<double> v;
    for (const auto& s : runs) v.push_back(s.*f);
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::vector<double> totals;
  for (const auto& s : runs) totals.push_back(s.total());
  std::sort(totals.begin(), totals.end());
  const Stages& s0 = runs.front();
  const double dec = median(&Stages::decode);
  std::printf("image %lldx%lld, prompt %lld positions (after the image splice), %lld new tokens, %lld [SEG] masks, "
              "median of %d runs\n",
              static_cast<long long>(rgb.size(0)), static_cast<long long>(rgb.size(1)),
              static_cast<long long>(s0.prompt_tokens), static_cast<long long>(s0.new_tokens),
              static_cast<long long>(targets), reps);
  std::printf("| stage | ms | share |\n|---|---:|---:|\n");
  const double total = totals[totals.size() / 2];
  auto row = [&](const char* name, double v, const std::string& note = "") {
    std::printf("| %s | %.1f | %.0f %%%s |\n", name, 1e3 * v, total > 0 ? 100.0 * v / total : 0.0, note.c_str());
  };
  row("preprocess (SAM + CLIP inputs)", median(&Stages::preprocess));
  row("CLIP + mm_projector", median(&Stages::clip));
  row("prefill", median(&Stages::prefill));
  char rate[64];
  std::snprintf(rate, sizeof rate, ", %.1f tok/s", s0.new_tokens > 1 && dec > 0 ? (s0.new_tokens - 1) / dec : 0.0);
  row("decode (KV cache)", dec, rate);
  row("SAM image encoder", median(&Stages::sam));
  row("mask decoding", median(&Stages::masks));
  std::printf("| **total** (sum of the stages) | %.1f | 100 %% |\n", 1e3 * total);
  const double llm_path = median(&Stages::clip) + median(&Stages::prefill) + dec;
  const double critical = c.device.is_cuda()
                              ? median(&Stages::preprocess) + std::max(median(&Stages::sam), llm_path) + median(&Stages::masks)
                              : total;
  std::printf("| **critical path**%s | %.1f | %.0f %% |\n",
              c.device.is_cuda() ? " (SAM beside CLIP + prefill + decode)" : " (CPU: stages in sequence)",
              1e3 * critical, total > 0 ? 100.0 * critical / total : 0.0);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  m2sa::reexec_with_malloc_tunables(argc, argv);  // as the CLI does (GLIBC_TUNABLES hugetlb, TOOLCHAIN.md trap 3)
  try {
    const m2sa::RuntimeInfo rt = m2sa::init_runtime();
    const int reps = arg_value(argc, argv, "--reps") ? std::atoi(arg_value(argc, argv, "--reps")) : 3;
    const int64_t new_tokens = arg_value(argc, argv, "--new") ? std::atoll(arg_value(argc, argv, "--new")) : 30;
    const int64_t targets = arg_value(argc, argv, "--targets") ? std::atoll(arg_value(argc, argv, "--targets")) : 3;
    int64_t h = 480, w = 640;
    if (const char* im = arg_value(argc, argv, "--image")) {
      M2SA_CHECK(std::sscanf(im, "%lldx%lld", reinterpret_cast<long long*>(&h), reinterpret_cast<long long*>(&w)) == 2,
                 "--image must be HxW, got ", im);
    }
    M2SA_CHECK(reps >= 1 && new_tokens >= 1 && targets >= 0 && h >= 1 && w >= 1, "bench_infer: bad arguments");
    const std::string root = M2SA_SOURCE_DIR;
    const m2sa::Tokenizer tok = m2sa::Tokenizer::load(root + "/configs/tokenizer/tokenizer.model");
    at::manual_seed(1);
    const at::Tensor rgb = at::randint(0, 256, {h, w, 3}).to(at::kByte);
    std::printf("bench_infer: %d thread(s), malloc hugetlb %s\n", rt.threads, rt.hugetlb_malloc ? "on" : "off");

    const mm::M2SAConfig tiny = mm::read_model_config(root + "/configs/tiny.json");
    std::vector<Case> cases{{"tiny config", tiny, at::kFloat, c10::Device(at::kCPU)},
                            {"tiny config", tiny, at::kBFloat16, c10::Device(at::kCPU)}};
    if (const char* cfg = arg_value(argc, argv, "--config-cpu")) {
      mm::M2SAConfig cpu = mm::read_model_config(cfg);
      std::string name = cfg;
      if (const char* layers = arg_value(argc, argv, "--llm-layers")) {
        cpu.llama.num_hidden_layers = std::atoll(layers);
        name += " (" + std::string(layers) + " LLaMA layers)";
      }
      cases.push_back({name, cpu, at::kBFloat16, c10::Device(at::kCPU)});
    }
    if (at::hasCUDA() && !has_flag(argc, argv, "--cpu-only")) {
      const char* cfg = arg_value(argc, argv, "--config");
      mm::M2SAConfig big = mm::read_model_config(cfg ? std::string(cfg) : root + "/configs/m2sa-7b.json");
      std::string name = cfg ? std::string(cfg) : "7B config";
      if (const char* layers = arg_value(argc, argv, "--llm-layers")) {
        big.llama.num_hidden_layers = std::atoll(layers);
        name += " (" + std::string(layers) + " LLaMA layers)";
      }
      cases.push_back({name, big, at::kBFloat16, c10::Device(at::kCUDA, 0)});
    } else {
      std::printf("CUDA not available (or --cpu-only): the 7B case is skipped\n");
    }
    for (const Case& c : cases) run_case(c, tok, rgb, reps, new_tokens, targets);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_infer: %s\n", e.what());
    return 1;
  }
}
