// SAM throughput: the image encoder (images/s) and the mask decoder per prompt (prompts/s), for a ViT-B-sized
// model with random weights (PyTorch default init), in fp32 and bf16, on the CPU and on CUDA when this LibTorch
// has it. The decoder is timed as stock SAM and with M2SA's fusion (compress_vit on the early-block features).
//
//   build/bench/bench_sam [--iters N] [--prompts N] [--img-size S] [--config vit_b|vit_l|vit_h|FILE.json]
//                         [--dtypes fp32,bf16] [--devices cpu,cuda]
//
// Timing: plain std::chrono wall clock, one warm-up call, then the mean of N calls; each call ends with a
// device-to-host copy of a scalar so CUDA work is finished.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/core/grad_mode.h>

#include <chrono>
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

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  int iters = 2;
  std::vector<int64_t> prompts{1, 8};
  int64_t img_size = 0;  // 0: the config's
  std::string config = "vit_b";
  std::vector<std::string> dtypes{"fp32", "bf16"};
  std::vector<std::string> devices{"cpu", "cuda"};
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) m2sa::fail("bench_sam: ", a, " needs a value");
      return argv[++i];
    };
    if (a == "--iters") o.iters = std::max(1, std::atoi(value().c_str()));
    else if (a == "--prompts") {
      o.prompts.clear();
      for (const auto& p : split(value())) o.prompts.push_back(std::max<int64_t>(1, std::atoll(p.c_str())));
    } else if (a == "--img-size") o.img_size = std::atoll(value().c_str());
    else if (a == "--config") o.config = value();
    else if (a == "--dtypes") o.dtypes = split(value());
    else if (a == "--devices") o.devices = split(value());
    else if (a == "--help" || a == "-h") {
      std::printf("usage: bench_sam [--iters N] [--prompts 1,8] [--img-size S] [--config vit_b|vit_l|vit_h|FILE.json] "
                  "[--dtypes fp32,bf16] [--devices cpu,cuda]\n");
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

// Mean seconds per call over `iters` calls after one warm-up call.
double time_it(int iters, const std::function<at::Tensor()>& fn) {
  fn().sum().item<float>();
  const auto start = Clock::now();
  for (int i = 0; i < iters; ++i) fn().sum().item<float>();
  return std::chrono::duration<double>(Clock::now() - start).count() / iters;
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
  const at::Tensor image = at::randn({1, 3, S, S}, opts);
  const std::string tag = device_name + " " + m2sa::precision_name(dtype);

  EncoderOutput enc;
  const double t_enc = time_it(o.iters, [&] {
    enc = model->image_encoder->forward(image);
    return enc.neck;
  });
  std::printf("%-10s encoder  %dx%d, %ld blocks: %8.3f s/image  %8.3f images/s\n", tag.c_str(), static_cast<int>(S),
              static_cast<int>(S), static_cast<long>(e.depth), t_enc, 1.0 / t_enc);
  std::fflush(stdout);

  const at::Tensor neck = enc.neck;                                       // [1, C, g, g]
  const at::Tensor early = enc.early.permute({0, 3, 1, 2}).contiguous();  // [1, E, g, g]
  const at::Tensor pe = model->prompt_encoder->get_dense_pe();
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
    std::printf("%-10s decoder  %3ld prompts, SAM:  %8.4f s/call  %8.2f prompts/s\n", tag.c_str(), static_cast<long>(n),
                t_plain, static_cast<double>(n) / t_plain);
    std::printf("%-10s decoder  %3ld prompts, M2SA: %8.4f s/call  %8.2f prompts/s (compress_vit %ld->%ld at %ldx%ld)\n",
                tag.c_str(), static_cast<long>(n), t_fused, static_cast<double>(n) / t_fused,
                static_cast<long>(e.embed_dim), static_cast<long>(C), static_cast<long>(g), static_cast<long>(g));
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  // libgomp spin-waits at barriers by default; on a shared, oversubscribed machine that makes 2 threads 5-50x
  // slower than 1 (measured here under load 8 on 2 vCPUs). PASSIVE only applies if set before the process starts,
  // so it is set for the re-executed process; an explicit OMP_WAIT_POLICY wins.
  if (!std::getenv("OMP_WAIT_POLICY") && !std::getenv("GLIBC_TUNABLES")) ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
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
