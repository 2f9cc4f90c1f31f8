// m2sa train --config C [--resume] [--nproc N] [--run-dir DIR] [--skip-bad]
// Trains M2SA as the training config says (m2sa/train/m2sa_training.h; docs/TRAINING.md). One process by default;
// `--nproc N` starts N local ranks (Gloo on the CPU, NCCL on CUDA) through the built-in launcher; under torchrun /
// Slurm / mpirun the rendezvous comes from RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT.
// SIGTERM / SIGINT to any rank (or to the launcher, which forwards it): every rank finishes the current step, the
// checkpoint of that step is written, and the processes exit with kExitStopped (75); a second signal ends at once.
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "command.h"
#include "local_ranks.h"
#include "m2sa/core/error.h"
#include "m2sa/core/runtime.h"
#include "m2sa/core/stop_request.h"
#include "m2sa/dist/communicator.h"
#include "m2sa/dist/launcher.h"
#include "m2sa/train/m2sa_training.h"

namespace m2sa::cli {
namespace {

struct TrainArgs {
  std::string config;
  bool resume = false;
  int nproc = 1;
  std::string run_dir;
  bool skip_bad = false;
};

int run_train(const TrainArgs& a) {
  train::TrainingRunConfig config = train::TrainingRunConfig::read(a.config);
  if (!a.run_dir.empty()) config.run_dir = a.run_dir;
  if (a.skip_bad) config.data.skip_bad = true;
  config.validate(a.config);

  if (should_launch_local_ranks(a.nproc)) {
    std::vector<std::string> args = {"train", "--config", a.config};
    if (a.resume) args.push_back("--resume");
    if (!a.run_dir.empty()) args.insert(args.end(), {"--run-dir", a.run_dir});
    if (a.skip_bad) args.push_back("--skip-bad");
    return launch_local_ranks(a.nproc, std::move(args));
  }

  // SIGTERM / SIGINT: finish the step, checkpoint, exit kStopped (docs/TRAINING.md, "Stopping and crashes").
  install_stop_handlers();
  const dist::DistEnv env = dist::DistEnv::from_environment();
  // Only rank 0 logs progress; the others report warnings and errors.
  if (env.rank != 0 && spdlog::get_level() < spdlog::level::warn) spdlog::set_level(spdlog::level::warn);
  train::TrainingRunOptions options;
  options.resume = a.resume;
  const train::TrainingRunResult r = train::run_training(config, options);
  if (r.summary.stopped) return kExitStopped;
  if (env.rank == 0) {
    spdlog::info("run directory: {} (checkpoints/latest, checkpoints/best.json, metrics.jsonl, tb/, report.html)",
                 r.run_dir.string());
    for (const auto& [k, v] : r.last_validation) spdlog::info("last validation {}: {:.4f}", k, v);
  }
  return 0;
}

Registrar register_train({"train", "Train M2SA from a training config (single process, --nproc N local ranks, or torchrun-style)",
               [](CLI::App& app) {
                 auto a = std::make_shared<TrainArgs>();
                 app.add_option("--config", a->config, "training config JSON (e.g. configs/train/tiny-synth.json)")
                     ->required();
                 app.add_flag("--resume", a->resume, "continue from the run directory's latest checkpoint");
                 app.add_option("--nproc", a->nproc, "local ranks to start (data parallel on this machine)")
                     ->capture_default_str();
                 app.add_option("--run-dir", a->run_dir, "run directory (overrides the config's run_dir)");
                 app.add_flag("--skip-bad", a->skip_bad, "skip (and count) bad dataset entries instead of stopping");
                 return [a]() -> int { return run_train(*a); };
               }});

}  // namespace
}  // namespace m2sa::cli
