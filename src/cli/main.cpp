// m2sa: train, evaluate and run M2SA from the command line. Each subcommand lives in its own cmd_*.cpp.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <csignal>
#include <iostream>
#include <map>

#include "command.h"
#include "m2sa/core/runtime.h"

namespace m2sa::cli {
std::vector<Command>& commands() {
  static std::vector<Command> all;
  return all;
}
}  // namespace m2sa::cli

int main(int argc, char** argv) {
  m2sa::reexec_with_malloc_tunables(argc, argv);
  // Past a file size limit (RLIMIT_FSIZE, `ulimit -f`) write(2) then fails with EFBIG, which our writers report with
  // the path, instead of SIGXFSZ killing the process in the middle of a checkpoint.
  ::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{"m2sa: multi-target, multi-granularity reasoning segmentation (M2SA) in C++"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "m2sa 0.1.0");
  auto& cmds = m2sa::cli::commands();
  std::sort(cmds.begin(), cmds.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  std::map<CLI::App*, std::function<int()>> runners;
  for (const auto& c : cmds) {
    CLI::App* sub = app.add_subcommand(c.name, c.description);
    runners[sub] = c.setup(*sub);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  m2sa::init_runtime();
  for (auto& [sub, run] : runners) {
    if (!sub->parsed()) continue;
    try {
      return run();
    } catch (const std::exception& e) {
      spdlog::error("{}", e.what());
      return 1;
    }
  }
  return 2;
}
