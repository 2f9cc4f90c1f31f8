// Training-step throughput of the generic trainer on the toy model (tests/train/toy_task.h): samples/s and peak
// RSS, single process, CPU. The M2SA numbers come with the model (see issue 8).
//   build/bench/bench_train_step [steps=30] [hidden=256] [micro_batch=8] [grad_accumulation=2]
#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>

#include "../tests/train/toy_task.h"
#include "m2sa/core/runtime.h"
#include "m2sa/dist/communicator.h"

int main(int argc, char** argv) {
  m2sa::reexec_with_malloc_tunables(argc, argv);  // the CLI's allocator and thread settings
  m2sa::init_runtime();
  spdlog::set_level(spdlog::level::warn);
  m2sa::test::ToyOptions o;
  o.steps = argc > 1 ? std::atoll(argv[1]) : 30;
  o.hidden = argc > 2 ? std::atoll(argv[2]) : 256;
  o.micro_batch = argc > 3 ? std::atoll(argv[3]) : 8;
  o.grad_accumulation_steps = argc > 4 ? std::atoll(argv[4]) : 2;
  o.checkpoint_every = 0;  // only the final checkpoint
  char tmpl[] = "/tmp/m2sa_bench_train_XXXXXX";
  const char* dir = ::mkdtemp(tmpl);
  if (!dir) return 1;
  auto comm = m2sa::dist::make_local_communicator();
  m2sa::test::ToyRun run = m2sa::test::run_toy(o, *comm, dir);
  double step_s = 0;
  int64_t samples = 0;
  // Skip the first two steps (allocator warm-up).
  for (size_t i = 2; i < run.reports.size(); ++i) {
    step_s += run.reports[i].step_time_s;
    samples += run.reports[i].samples;
  }
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  std::printf("toy trainer (hidden %lld, %lld x %lld images per step, %d threads): %.1f samples/s, %.2f ms/step, "
              "peak RSS %.1f MiB, final loss %.4f\n",
              static_cast<long long>(o.hidden), static_cast<long long>(o.grad_accumulation_steps),
              static_cast<long long>(o.micro_batch), at::get_num_threads(), samples / step_s,
              1000 * step_s / static_cast<double>(run.reports.size() - 2), ru.ru_maxrss / 1024.0,
              run.reports.back().loss);
  std::filesystem::remove_all(dir);
  return 0;
}
