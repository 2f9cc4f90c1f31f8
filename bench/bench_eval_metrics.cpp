// Speed of the metric core on realistic mask sizes: per-image scoring in both modes (CPU, current threads).
// Usage: bench_eval_metrics [H W N_GT N_PRED]   (default 1024 1024 5 5)
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "m2sa/eval/seg_meter.h"

using namespace m2sa::eval;

template <typename Fn>
double time_ms(int reps, Fn&& fn) {
  fn();  // warm-up
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) fn();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
}

int main(int argc, char** argv) {
  const int64_t h = argc > 1 ? std::atoll(argv[1]) : 1024, w = argc > 2 ? std::atoll(argv[2]) : 1024;
  const int64_t ng = argc > 3 ? std::atoll(argv[3]) : 5, np = argc > 4 ? std::atoll(argv[4]) : 5;
  at::manual_seed(0);
  at::Tensor gt = at::rand({ng, h, w}).lt(0.3).to(at::kByte);
  gt.masked_fill_(at::rand({ng, h, w}).lt(0.01), 255);
  at::Tensor pred = at::rand({np, h, w}).lt(0.3);
  std::printf("masks %lldx%lld, %lld GT, %lld predictions, %d intra-op threads\n", (long long)h, (long long)w,
              (long long)ng, (long long)np, at::get_num_threads());
  SegMeter tf(EvalMode::kTeacherForced), gen(EvalMode::kGenerate);
  const double t_tf = time_ms(10, [&] { tf.add(pred, gt); });
  const double t_gen = time_ms(10, [&] { gen.add(pred, gt); });
  std::printf("teacher-forced add: %8.2f ms/image\n", t_tf);
  std::printf("generate add:       %8.2f ms/image (%lld x %lld pairs + Hungarian)\n", t_gen, (long long)ng,
              (long long)np);
  std::printf("(checks: gIoU tf %.4f, gen %.4f)\n", tf.giou(), gen.giou());
  return 0;
}
