// CLIP ViT-L/14 (224 px) as M2SA runs it: image_features (the layers up to select_layer, patch tokens), random
// weights, beside the matmul peak measured in the same run (bench/physical_limits.h). Achieved TFLOP/s counts the
// encoder's matmuls: per layer and token 24 W^2 (q, k, v, o and the 4W MLP) + 4 T W (scores and mixing).
//
// Usage: build/bench/bench_clip [--batch 1,8 (1)] [--iters N (3)] [--dtypes bf16,fp32 (bf16)] [--devices cpu,cuda]
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
#include "m2sa/models/clip/clip_vision.h"
#include "physical_limits.h"

namespace {

using Clock = std::chrono::steady_clock;

const char* arg(int argc, char** argv, const char* name, const char* fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == name) return argv[i + 1];
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  m2sa::reexec_with_malloc_tunables(argc, argv);  // as the CLI does
  try {
    const m2sa::RuntimeInfo rt = m2sa::init_runtime();
    const int iters = std::max(1, std::atoi(arg(argc, argv, "--iters", "3")));
    std::vector<int64_t> batches;
    for (const auto& b : m2sa::bench::split_list(arg(argc, argv, "--batch", "1"))) batches.push_back(std::max(1, std::atoi(b.c_str())));
    const m2sa::clip::ClipVisionConfig c = m2sa::clip::ClipVisionConfig::vit_l14_224();
    const int64_t w = c.hidden_size, tokens = 1 + (c.image_size / c.patch_size) * (c.image_size / c.patch_size);
    const int64_t layers = c.select_layer < 0 ? c.num_hidden_layers + 1 + c.select_layer : c.select_layer;
    const double flops_per_image =
        static_cast<double>(layers) * static_cast<double>(tokens) * (24.0 * w * w + 4.0 * tokens * w);
    std::printf("bench_clip: ViT-L/14 %lld px, %lld tokens, %lld of %lld layers (select_layer %lld), %.1f GFLOP/image, "
                "%d threads%s\n",
                static_cast<long long>(c.image_size), static_cast<long long>(tokens), static_cast<long long>(layers),
                static_cast<long long>(c.num_hidden_layers), static_cast<long long>(c.select_layer),
                flops_per_image / 1e9, rt.threads, rt.hugetlb_malloc ? ", hugetlb malloc" : "");
    std::printf("| device | dtype | batch | ms/image | TFLOP/s | matmul peak TFLOP/s | of peak |\n"
                "|--------|-------|-------|----------|---------|---------------------|---------|\n");
    at::NoGradGuard no_grad;
    for (const std::string& dev : m2sa::bench::split_list(arg(argc, argv, "--devices", "cpu,cuda"))) {
      if (dev != "cpu" && dev != "cuda") m2sa::fail("bench_clip: --devices takes cpu and/or cuda, got '", dev, "'");
      if (dev == "cuda" && !at::hasCUDA()) continue;
      const c10::Device device = dev == "cuda" ? c10::Device(at::kCUDA, 0) : c10::Device(at::kCPU);
      if (device.is_cuda()) at::globalContext().setAllowTF32CuBLAS(false);
      for (const std::string& dn : m2sa::bench::split_list(arg(argc, argv, "--dtypes", "bf16"))) {
        const at::ScalarType dtype = m2sa::parse_precision(dn);
        const double peak = m2sa::bench::matmul_peak_tflops(device, dtype);
        at::manual_seed(0);
        m2sa::clip::ClipVisionModel model(c);
        model->to(device, dtype);
        model->eval();
        for (const int64_t b : batches) {
          const at::Tensor pixels = at::randn({b, 3, c.image_size, c.image_size}, at::TensorOptions().device(device));
          m2sa::bench::sync(model->image_features(pixels));  // warm-up
          const auto t0 = Clock::now();
          for (int i = 0; i < iters; ++i) m2sa::bench::sync(model->image_features(pixels));
          const double s = std::chrono::duration<double>(Clock::now() - t0).count() / iters;
          const double tflops = flops_per_image * static_cast<double>(b) / s / 1e12;
          std::printf("| %-6s | %-5s | %5lld | %8.1f | %7.3f | %19.3f | %6.1f%% |\n", dev.c_str(), dn.c_str(),
                      static_cast<long long>(b), 1e3 * s / static_cast<double>(b), tflops, peak, 100.0 * tflops / peak);
          std::fflush(stdout);
        }
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_clip: %s\n", e.what());
    return 1;
  }
  return 0;
}
