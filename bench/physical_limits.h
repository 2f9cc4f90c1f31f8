#pragma once
// The physical limits the benchmarks print beside their throughput, measured in the same run on the same device:
// copy bandwidth (what a memory-bound kernel such as batch-1 decoding can at best reach) and the matmul peak (what
// a compute-bound encoder can at best reach), and the small helpers the benchmarks share. Header-only: each
// benchmark is one source file.
#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <sstream>
#include <string>
#include <vector>

namespace m2sa::bench {

// "a,b,,c" -> {"a", "b", "c"} (comma-separated flag values).
inline std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

// Waits for the device (a scalar read back to the host).
inline void sync(const at::Tensor& t) {
  if (t.defined() && !t.is_cpu()) (void)t.reshape({-1}).slice(0, 0, 1).to(at::kCPU);
}

// Best of `iters` copies of a `bytes`-sized buffer on `device` (memcpy with every intra-op thread on the CPU, a
// device-to-device copy on a GPU), in GB/s counting the bytes read and the bytes written (as STREAM's copy does).
inline double copy_bandwidth_gbs(const c10::Device& device, int64_t bytes = int64_t{1} << 30, int iters = 5) {
  const auto opts = at::TensorOptions().dtype(at::kByte).device(device);
  at::Tensor src = at::ones({bytes}, opts), dst = at::empty({bytes}, opts);
  dst.copy_(src);  // first touch
  sync(dst);
  double best = 1e30;
  for (int i = 0; i < iters; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    dst.copy_(src);
    sync(dst);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return 2.0 * static_cast<double>(bytes) / best / 1e9;
}

// Best of `iters` square matmuls of size n in `dtype` on `device`, in TFLOP/s.
inline double matmul_peak_tflops(const c10::Device& device, at::ScalarType dtype, int64_t n = 2048, int iters = 5) {
  const auto opts = at::TensorOptions().dtype(dtype).device(device);
  at::Tensor a = at::randn({n, n}, opts), b = at::randn({n, n}, opts);
  sync(at::matmul(a, b));
  double best = 1e30;
  for (int i = 0; i < iters; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    sync(at::matmul(a, b));
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n) / best / 1e12;
}

}  // namespace m2sa::bench
