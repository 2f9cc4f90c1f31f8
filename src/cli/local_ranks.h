#pragma once
// `--nproc N` of `m2sa train` and `m2sa eval`: this binary started N times as local ranks through the built-in
// launcher (train/launcher.h), each with its share of the cores unless the user chose the thread count.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "m2sa/core/error.h"
#include "m2sa/core/runtime.h"
#include "m2sa/dist/communicator.h"
#include "m2sa/dist/launcher.h"

namespace m2sa::cli {

// True when this process should start the ranks itself (--nproc > 1 and it is not already one of them).
inline bool should_launch_local_ranks(int nproc) {
  M2SA_CHECK(nproc >= 1, "--nproc: must be >= 1, got ", nproc);
  if (nproc == 1 || dist::launched_by_local_launcher()) return false;
  const dist::DistEnv env = dist::DistEnv::from_environment();
  M2SA_CHECK(!env.distributed(), "--nproc ", nproc, ": this process is already rank ", env.rank, " of ",
             env.world_size, " (WORLD_SIZE is set by an external launcher); drop --nproc");
  return true;
}

// Runs `args` (the subcommand and its flags, without --nproc) as `nproc` ranks; returns the exit status.
inline int launch_local_ranks(int nproc, std::vector<std::string> args) {
  const std::string command = args.empty() ? std::string("m2sa") : "m2sa " + args.front();
  dist::LaunchOptions lo;
  lo.args = std::move(args);
  if (!std::getenv("M2SA_NUM_THREADS") && !std::getenv("OMP_NUM_THREADS")) {
    const int threads = std::max(1, default_thread_count() / nproc);
    lo.env.emplace_back("M2SA_NUM_THREADS", std::to_string(threads));
    lo.env.emplace_back("OMP_NUM_THREADS", std::to_string(threads));
  }
  spdlog::info("{}: starting {} local ranks", command, nproc);
  const int code = dist::launch_local(nproc, lo);
  if (code != 0) spdlog::error("{}: a rank failed (exit status {})", command, code);
  return code;
}

}  // namespace m2sa::cli
