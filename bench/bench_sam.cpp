// SAM throughput: the image encoder (ms/image and achieved TFLOP/s at each --batch, beside the matmul peak
// measured in the same run, the physical limit) and the mask decoder per prompt (prompts/s), for a SAM model with
// random weights (PyTorch default init), in fp32 and bf16, on the CPU and on CUDA when this LibTorch has it. The
// decoder is timed as stock SAM, with M2SA's fusion (compress_vit on the early-block features) in every call, and
// with the fusion computed once per image (what M2SAForCausalLM does: SamFeatures::image).
//
//   build/bench/bench_sam [--iters N] [--warmup 1] [--batch 1,8] [--prompts N] [--img-size S]
//                         [--config vit_b|vit_l|vit_h|FILE.json] [--dtypes fp32,bf16] [--devices cpu,cuda]
//                         [--no-decoder]
//
// Timing: plain std::chrono wall clock, one warm-up call (--warmup for the encoder), then the mean of N calls;
// each call ends with a device-to-host copy of a scalar so CUDA work is finished. FLOPs are counted from the
// config (2 per multiply-add of every matmul and convolution: patch embedding, qkv, attention scores and values,
// the decomposed relative position terms, projection, MLP, neck); elementwise work is not counted. The matmul peak
// is the best of a few square at::mm calls (4096 on CUDA, 2048 on the CPU) in the same dtype on the same device.
// The process runtime (threads, malloc tunables) is the CLI's: reexec_with_malloc_tunables + init_runtime, as
// src/cli/main.cpp.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "m2sa/core/dtype.h"
#include "m2sa/core/error.h"
#include "m2sa/core/runtime.h"
#include "m2sa/models/sam/builders.h"
#include "physical_limits.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  int iters = 2;
  int warmup = 1;  // encoder calls before timing (0 on a slow CPU: a batch-8 ViT call can take minutes)
  std::vector<int64_t> batches{1, 8};
  bool decoder = true;
  std::vector<int64_t> prompts{1, 8};
  int64_t img_size = 0;  // 0: the config's
  std::string config = "vit_b";
  std::vector<std::string> dtypes{"fp32", "bf16"};
  std::vector<std::string> devices{"cpu", "cuda"};
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) m2sa::fail("bench_sam: ", a, " needs a value");
      return argv[++i];
    };
    if (a == "--iters") o.iters = std::max(1, std::atoi(value().c_str()));
    else if (a == "--warmup") o.warmup = std::max(0, std::atoi(value().c_str()));
    else if (a == "--batch") {
      o.batches.clear();
      for (const auto& b : m2sa::bench::split_list(value())) o.batches.push_back(std::max<int64_t>(1, std::atoll(b.c_str())));
    } else if (a == "--no-decoder") o.decoder = false;
    else if (a == "--prompts") {
      o.prompts.clear();
      for (const auto& p : m2sa::bench::split_list(value())) o.prompts.push_back(std::max<int64_t>(1, std::atoll(p.c_str())));
    } else if (a == "--img-size") o.img_size = std::atoll(value().c_str());
    else if (a == "--config") o.config = value();
    else if (a == "--dtypes") o.dtypes = m2sa::bench::split_list(value());
    else if (a == "--devices") o.devices = m2sa::bench::split_list(value());
    else if (a == "--help" || a == "-h") {
      std::printf("usage: bench_sam [--iters N] [--warmup N] [--batch 1,8] [--prompts 1,8] [--img-size S] "
                  "[--config vit_b|vit_l|vit_h|FILE.json] [--dtypes fp32,bf16] [--devices cpu,cuda] [--no-decoder]\n");
      std::exit(0);
    } else {
      m2sa::fail("bench_sam: unknown argument '", a, "' (see --help)");
    }
  }
  return o;
}

m2sa::sam::SamConfig base_config(const Options& o) {
  m2sa::sam::SamConfig c = o.config == "vit_b"   ? m2sa::sam::SamConfig::vit_b()
                           : o.config == "vit_l" ? m2sa::sam::SamConfig::vit_l()
                           : o.config == "vit_h" ? m2sa::sam::SamConfig::vit_h()
                                                 : m2sa::sam::read_sam_config(o.config);
  if (o.img_size > 0) c.image_encoder.img_size = o.img_size;
  // M2SA's wiring: tap the first global block, fuse it in the decoder.
  if (c.image_encoder.early_layer < 0)
    c.image_encoder.early_layer = c.image_encoder.global_attn_indexes.empty() ? 0 : c.image_encoder.global_attn_indexes[0];
  c.mask_decoder.compress_vit = true;
  c.validate("bench_sam config");
  return c;
}

// Mean seconds per call over `iters` calls after `warmup` warm-up calls.
double time_it(int iters, const std::function<at::Tensor()>& fn, int warmup = 1) {
  for (int i = 0; i < warmup; ++i) fn().sum().item<float>();
  const auto start = Clock::now();
  for (int i = 0; i < iters; ++i) fn().sum().item<float>();
  return std::chrono::duration<double>(Clock::now() - start).count() / iters;
}

// Multiply-add FLOPs (x2) of one image through the encoder: matmuls and convolutions only.
double encoder_flops(const m2sa::sam::SamConfig& config) {
  const auto& e = config.image_encoder;
  const double g = static_cast<double>(e.grid_size()), E = static_cast<double>(e.embed_dim);
  const double heads = static_cast<double>(e.num_heads), D = E / heads, mlp = static_cast<double>(e.mlp_dim());
  const double C = static_cast<double>(e.out_chans), p = static_cast<double>(e.patch_size);
  double f = 2 * g * g * E * 3 * p * p;  // patch embedding
  for (int64_t i = 0; i < e.depth; ++i) {
    const int64_t ws = e.block_window(i);
    // Windowed blocks attend inside ws x ws windows over the grid padded to a multiple of ws (padding included).
    const double side = ws > 0 ? static_cast<double>(ws) : g;
    const double windows = ws > 0 ? std::pow(std::ceil(g / static_cast<double>(ws)), 2) : 1.0;
    const double t = side * side;                  // tokens per attention
    const double tokens = windows * t;             // tokens attended (with padding)
    f += 2 * g * g * E * (3 * E + E + 2 * mlp);    // qkv, proj, lin1 + lin2
    f += windows * heads * 2 * (2 * t * t * D);    // q k^T and attn v
    if (e.use_rel_pos) f += heads * tokens * 2 * (2 * side * D);  // einsums with Rh, Rw
  }
  f += 2 * g * g * (E * C + 9 * C * C);  // neck: 1x1 and 3x3 convs
  return f;
}

void run(const Options& o, const m2sa::sam::SamConfig& config, const std::string& device_name, c10::ScalarType dtype) {
  using namespace m2sa::sam;
  const at::Device device(device_name == "cuda" ? at::kCUDA : at::kCPU);
  Sam model = build_sam(config);
  model->to(device, dtype);
  model->eval();
  const auto& e = config.image_encoder;
  const int64_t S = e.img_size, g = config.image_embedding_size(), C = config.prompt_embed_dim();
  const auto opts = at::TensorOptions().device(device).dtype(dtype);
  const std::string tag = device_name + " " + m2sa::precision_name(dtype);

  const double peak = m2sa::bench::matmul_peak_tflops(device, dtype, device.is_cuda() ? 4096 : 2048,
                                                       device.is_cuda() ? 20 : 3);
  const double flops = encoder_flops(config);
  std::printf("%-10s encoder %dx%d, %ld blocks, %.1f GFLOP/image; matmul peak %.2f TFLOP/s\n", tag.c_str(),
              static_cast<int>(S), static_cast<int>(S), static_cast<long>(e.depth), flops / 1e9, peak);
  std::printf("%-10s %6s %11s %9s %12s %10s\n", "", "batch", "ms/image", "TFLOP/s", "peak TFLOP/s", "% of peak");
  std::fflush(stdout);
  EncoderOutput enc;
  for (const int64_t batch : o.batches) {
    const at::Tensor images = at::randn({batch, 3, S, S}, opts);
    const double t = time_it(
        o.iters,
        [&] {
          enc = model->image_encoder->forward(images);
          return enc.neck;
        },
        o.warmup);
    const double per_image = t / static_cast<double>(batch);
    const double achieved = flops / per_image / 1e12;
    std::printf("%-10s %6ld %11.1f %9.3f %12.2f %9.1f%%\n", tag.c_str(), static_cast<long>(batch), 1000 * per_image,
                achieved, peak, 100 * achieved / peak);
    std::fflush(stdout);
  }
  if (!o.decoder) return;

  const at::Tensor neck = enc.neck.slice(0, 0, 1);                                       // [1, C, g, g]
  const at::Tensor early = enc.early.slice(0, 0, 1).permute({0, 3, 1, 2}).contiguous();  // [1, E, g, g]
  const at::Tensor pe = model->prompt_encoder->get_dense_pe();
  const at::Tensor fused = model->mask_decoder->fuse(neck, early);  // once per image, as M2SA keeps it
  // Stock SAM's decoder: a second model built without compress_vit (its random weights do not matter here).
  SamConfig plain_config = config;
  plain_config.mask_decoder.compress_vit = false;
  Sam plain = build_sam(plain_config);
  plain->to(device, dtype);
  for (const int64_t n : o.prompts) {
    const PromptEmbeddings text = model->prompt_encoder->text_prompt(at::randn({n, 1, C}, opts));
    const double t_plain = time_it(o.iters, [&] {
      return plain->mask_decoder->forward(neck, std::nullopt, pe, text.sparse, text.dense, false).masks;
    });
    const double t_fused = time_it(o.iters, [&] {
      return model->mask_decoder->forward(neck, early, pe, text.sparse, text.dense, false).masks;
    });
    const double t_once = time_it(o.iters, [&] {
      return model->mask_decoder->forward_fused(fused, pe, text.sparse, text.dense, false).masks;
    });
    std::printf("%-10s decoder  %3ld prompts, SAM:  %8.4f s/call  %8.2f prompts/s\n", tag.c_str(), static_cast<long>(n),
                t_plain, static_cast<double>(n) / t_plain);
    std::printf("%-10s decoder  %3ld prompts, M2SA: %8.4f s/call  %8.2f prompts/s (compress_vit %ld->%ld at %ldx%ld "
                "in every call)\n",
                tag.c_str(), static_cast<long>(n), t_fused, static_cast<double>(n) / t_fused,
                static_cast<long>(e.embed_dim), static_cast<long>(C), static_cast<long>(g), static_cast<long>(g));
    std::printf("%-10s decoder  %3ld prompts, M2SA: %8.4f s/call  %8.2f prompts/s (fused once per image)\n",
                tag.c_str(), static_cast<long>(n), t_once, static_cast<double>(n) / t_once);
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  // The CLI's allocator and thread settings. (On a shared, oversubscribed machine libgomp's spin-waiting can make 2
  // threads slower than 1: set OMP_WAIT_POLICY=PASSIVE in the environment there, for the CLI as well.)
  m2sa::reexec_with_malloc_tunables(argc, argv);
  const m2sa::RuntimeInfo rt = m2sa::init_runtime();
  try {
    const Options o = parse(argc, argv);
    const m2sa::sam::SamConfig config = base_config(o);
    at::NoGradGuard no_grad;
    const char* wait_policy = std::getenv("OMP_WAIT_POLICY");
    std::printf("bench_sam: config %s (embed %ld, depth %ld, heads %ld, window %ld), img %ld, %d threads%s, "
                "OMP_WAIT_POLICY=%s, %d iters\n",
                o.config.c_str(), static_cast<long>(config.image_encoder.embed_dim),
                static_cast<long>(config.image_encoder.depth), static_cast<long>(config.image_encoder.num_heads),
                static_cast<long>(config.image_encoder.window_size), static_cast<long>(config.image_encoder.img_size),
                rt.threads, rt.hugetlb_malloc ? ", hugetlb malloc" : "", wait_policy ? wait_policy : "default", o.iters);
    for (const auto& device : o.devices) {
      if (device == "cuda" && !at::hasCUDA()) {
        std::printf("cuda: not available in this LibTorch build / machine, skipped\n");
        continue;
      }
      if (device != "cpu" && device != "cuda") m2sa::fail("bench_sam: unknown device '", device, "'");
      if (device == "cuda") {
        // Exact fp32 (no TF32), as the parity tolerances assume.
        at::globalContext().setAllowTF32CuBLAS(false);
        at::globalContext().setAllowTF32CuDNN(false);
      }
      for (const auto& d : o.dtypes) run(o, config, device, m2sa::parse_precision(d));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_sam: %s\n", e.what());
    return 1;
  }
  return 0;
}
