#pragma once
// The built-in local launcher (`m2sa train --nproc N`): runs N copies of the current executable as ranks
// 0..N-1 of one data-parallel job on this machine, like `torchrun --standalone --nproc_per_node N`.
// Each child gets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1, MASTER_PORT=<a free
// port> and M2SA_LAUNCHED=1 (so that it does not launch again). Their stdout and stderr come back line by line
// with a "[rank r] " prefix. When one child fails (non-zero exit or a signal), the others get SIGTERM, then
// SIGKILL after a grace period, and the launcher returns the failing child's status. If the launcher itself gets
// SIGINT/SIGTERM it forwards it to the children; if it dies, the children get SIGKILL (PR_SET_PDEATHSIG).
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace m2sa::dist {

struct LaunchOptions {
  // Arguments after argv[0] for every child (the executable is this process's own, /proc/self/exe).
  std::vector<std::string> args;
  // Extra environment variables for the children (on top of this process's environment).
  std::vector<std::pair<std::string, std::string>> env;
  // Receives every output line of every child; default: print "[rank r] line" to stdout.
  std::function<void(int rank, const std::string& line)> on_line;
  double kill_grace_s = 5.0;  // SIGTERM -> SIGKILL delay for the surviving children after a failure
  int master_port = 0;        // 0: pick a free port
  // Stop the other ranks when one fails (torchrun's behaviour). Tests turn it off to watch the survivors detect
  // the failure on their own (collective error or timeout).
  bool stop_others_on_failure = true;
};

// Runs the children and waits for all of them. Returns 0 when every child exits with 0, kExitStopped when they
// stopped on request (core/stop_request.h; SIGTERM / SIGINT to the launcher are forwarded to every child), else the
// exit status of the first child that failed (128 + signal number when it was killed by a signal).
int launch_local(int nproc, const LaunchOptions& options);

// A TCP port that is free on 127.0.0.1 right now.
int find_free_port();

// True in a process started by launch_local() (M2SA_LAUNCHED is set).
bool launched_by_local_launcher();

}  // namespace m2sa::dist
