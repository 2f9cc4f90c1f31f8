// M2SA training throughput: samples/s, the time each step waits for its data, and peak memory of `m2sa train`'s
// code path (run_training) on a small synthetic set written to a temp folder, with the input pipeline on the
// training thread (prefetch 0, as before issue 15) and on the prefetch thread (prefetch 2, the default).
//   build/bench/bench_train_m2sa [steps=20] [images_per_micro_batch=4] [prefetch=0,2]
// CPU: the tiny config trained from scratch (everything trainable, fp32), as configs/train/tiny-synth.json.
// CUDA (when available): additionally the 7B config with random weights (shape-identical to the real checkpoint),
// LoRA mode, bf16 with fp32 masters, gradient checkpointing, 1 image per micro-batch, as the reference trains it.
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#if defined(M2SA_WITH_NCCL)
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "m2sa/core/runtime.h"
#include "m2sa/data/synth.h"
#include "m2sa/train/m2sa_training.h"

namespace {
namespace fs = std::filesystem;
using m2sa::train::StepReport;

double peak_rss_mib() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;
}

void run(const std::string& name, m2sa::train::TrainingRunConfig config, int64_t steps, int64_t prefetch) {
  config.train.epochs = 1;
  config.train.steps_per_epoch = steps;
  config.train.warmup_num_steps = 2;
  config.train.print_freq = steps + 1;
  config.validation.split = "none";
  config.export_model = "none";
  config.run_dir = config.run_dir.string() + "-prefetch" + std::to_string(prefetch);  // a fresh run each
  config.validate(name);
  double step_s = 0, wait_s = 0;
  int64_t samples = 0, counted = 0;
  m2sa::train::TrainingRunOptions o;
  o.prefetch = prefetch;
  o.on_step = [&](const StepReport& r) {
    if (r.step <= 2) return;  // allocator and page-cache warm-up
    step_s += r.step_time_s;
    wait_s += r.data_wait_s;
    samples += r.samples;
    ++counted;
  };
  m2sa::train::run_training(config, o);
  std::string memory = "peak RSS " + std::to_string(static_cast<int64_t>(peak_rss_mib())) + " MiB";
#if defined(M2SA_WITH_NCCL)
  const auto device = config.resolved_device(0);
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    memory += ", peak CUDA allocated " +
              std::to_string(stats.allocated_bytes[0].peak / (int64_t{1} << 20)) + " MiB";
  }
#endif
  std::printf("%-40s prefetch %lld, %3lld steps x %lld images: %7.2f samples/s, %8.1f ms/step, %7.1f ms/step "
              "waiting for data, %s\n",
              name.c_str(), static_cast<long long>(prefetch), static_cast<long long>(counted),
              static_cast<long long>(config.images_per_micro_batch), step_s > 0 ? samples / step_s : 0.0,
              counted ? 1000 * step_s / counted : 0.0, counted ? 1000 * wait_s / counted : 0.0, memory.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  // The CLI's process settings (src/cli/main.cpp): glibc huge-page malloc tunables (a re-exec), then the threads.
  m2sa::reexec_with_malloc_tunables(argc, argv);
  m2sa::init_runtime();
  spdlog::set_level(spdlog::level::warn);
  const int64_t steps = argc > 1 ? std::atoll(argv[1]) : 20;
  const int64_t images = argc > 2 ? std::atoll(argv[2]) : 4;
  std::vector<int64_t> prefetches;
  {
    std::stringstream in(argc > 3 ? argv[3] : "0,2");
    for (std::string item; std::getline(in, item, ',');)
      if (!item.empty()) prefetches.push_back(std::atoll(item.c_str()));
  }
  const fs::path source = M2SA_SOURCE_DIR;
  char tmpl[] = "/tmp/m2sa_bench_train_XXXXXX";
  const char* dir = ::mkdtemp(tmpl);
  if (!dir) return 1;
  const fs::path tmp(dir);
  m2sa::data::SynthOptions so;
  so.train_images = 40;
  so.val_images = 2;
  so.test_images = 1;
  m2sa::data::write_synthetic_dataset(tmp / "data", so);

  auto config = m2sa::train::TrainingRunConfig::read(source / "configs" / "train" / "tiny-synth.json");
  config.data.dataset_dir = tmp / "data";
  config.run_dir = tmp / "tiny";
  config.images_per_micro_batch = images;
  config.device = "cpu";
  std::printf("M2SA training, %d intra-op threads\n", at::get_num_threads());
  for (int64_t p : prefetches) run("tiny, CPU, fp32, full", config, steps, p);

  if (at::hasCUDA()) {
    auto big = config;
    big.model = m2sa::m2sa_model::read_model_config(source / "configs" / "m2sa-7b.json");
    big.train_mode = m2sa::m2sa_model::TrainMode::kLora;
    big.precision = "bf16";
    big.device = "cuda";
    big.gradient_checkpointing = true;
    big.images_per_micro_batch = 1;
    big.run_dir = tmp / "7b";
    for (int64_t p : prefetches) run("7B (random weights), CUDA, bf16, LoRA", big, std::min<int64_t>(steps, 10), p);
  } else {
    std::printf("7B on CUDA: skipped (no CUDA device / CUDA LibTorch)\n");
  }
  std::error_code ec;
  fs::remove_all(tmp, ec);
  return 0;
}
