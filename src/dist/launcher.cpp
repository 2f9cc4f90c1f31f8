#include "m2sa/dist/launcher.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <thread>

#include "m2sa/core/error.h"
#include "m2sa/core/stop_request.h"

extern char** environ;

namespace m2sa::dist {

int find_free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  M2SA_CHECK(fd >= 0, "launcher: socket() failed: ", std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    ::close(fd);
    fail("launcher: cannot bind a free port on 127.0.0.1: ", std::strerror(err));
  }
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

bool launched_by_local_launcher() {
  const char* v = std::getenv("M2SA_LAUNCHED");
  return v && *v && std::string(v) != "0";
}

namespace {

std::atomic<int> g_forward_signal{0};
void on_forwarded_signal(int sig) { g_forward_signal.store(sig); }

struct Child {
  int rank = 0;
  pid_t pid = -1;
  int out_fd = -1;    // read end of the child's stdout+stderr pipe
  std::string partial;  // an unfinished output line
  bool exited = false;
  int status = 0;      // exit code, or 128 + signal
};

std::string describe(int status) {
  if (status >= 128) {
    const int sig = status - 128;
    const char* name = ::strsignal(sig);
    return "was killed by signal " + std::to_string(sig) + (name ? std::string(" (") + name + ")" : "");
  }
  return "exited with code " + std::to_string(status);
}

}  // namespace

int launch_local(int nproc, const LaunchOptions& options) {
  M2SA_CHECK(nproc >= 1, "launcher: --nproc must be at least 1, got ", nproc);
  M2SA_CHECK(!launched_by_local_launcher(), "launcher: this process was itself started by the local launcher "
             "(M2SA_LAUNCHED is set); refusing to launch again");
  auto on_line = options.on_line;
  if (!on_line) {
    on_line = [](int rank, const std::string& line) {
      std::fprintf(stdout, "[rank %d] %s\n", rank, line.c_str());
      std::fflush(stdout);
    };
  }
  // The executable and the argument vector, prepared before fork() (only async-signal-safe calls after it).
  char exe[4096];
  const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  M2SA_CHECK(n > 0, "launcher: cannot resolve /proc/self/exe: ", std::strerror(errno));
  exe[n] = '\0';
  std::vector<std::string> argv_s{exe};
  argv_s.insert(argv_s.end(), options.args.begin(), options.args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);

  const int port = options.master_port > 0 ? options.master_port : find_free_port();
  std::vector<std::string> base_env;
  const std::vector<std::string> ours = {"RANK=",        "WORLD_SIZE=",  "LOCAL_RANK=", "LOCAL_WORLD_SIZE=",
                                         "MASTER_ADDR=", "MASTER_PORT=", "M2SA_LAUNCHED="};
  for (char** e = environ; *e; ++e) {
    const std::string kv(*e);
    bool skip = false;
    for (const auto& prefix : ours) skip = skip || kv.rfind(prefix, 0) == 0;
    for (const auto& [k, v] : options.env) skip = skip || kv.rfind(k + "=", 0) == 0;
    if (!skip) base_env.push_back(kv);
  }
  for (const auto& [k, v] : options.env) base_env.push_back(k + "=" + v);
  base_env.push_back("WORLD_SIZE=" + std::to_string(nproc));
  base_env.push_back("LOCAL_WORLD_SIZE=" + std::to_string(nproc));
  base_env.push_back("MASTER_ADDR=127.0.0.1");
  base_env.push_back("MASTER_PORT=" + std::to_string(port));
  base_env.push_back("M2SA_LAUNCHED=1");

  struct sigaction forward{}, old_int{}, old_term{};
  forward.sa_handler = on_forwarded_signal;
  sigemptyset(&forward.sa_mask);
  g_forward_signal.store(0);
  ::sigaction(SIGINT, &forward, &old_int);
  ::sigaction(SIGTERM, &forward, &old_term);

  std::vector<Child> children(nproc);
  const pid_t parent = ::getpid();
  for (int r = 0; r < nproc; ++r) {
    std::vector<std::string> env_s = base_env;
    env_s.push_back("RANK=" + std::to_string(r));
    env_s.push_back("LOCAL_RANK=" + std::to_string(r));
    std::vector<char*> envp;
    for (auto& e : env_s) envp.push_back(e.data());
    envp.push_back(nullptr);
    int fds[2];
    M2SA_CHECK(::pipe2(fds, O_CLOEXEC) == 0, "launcher: pipe() failed: ", std::strerror(errno));
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) {
      const int err = errno;
      for (auto& c : children)
        if (c.pid > 0) ::kill(c.pid, SIGKILL);
      fail("launcher: fork() failed: ", std::strerror(err));
    }
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      ::signal(SIGINT, SIG_DFL);
      ::signal(SIGTERM, SIG_DFL);
      const int devnull = ::open("/dev/null", O_RDONLY);
      if (devnull >= 0) ::dup2(devnull, 0);
      ::dup2(fds[1], 1);
      ::dup2(fds[1], 2);
      ::execve(exe, argv.data(), envp.data());
      const char msg[] = "launcher: execve failed\n";
      ssize_t ignored = ::write(2, msg, sizeof(msg) - 1);
      (void)ignored;
      ::_exit(127);
    }
    ::close(fds[1]);
    children[r].rank = r;
    children[r].pid = pid;
    children[r].out_fd = fds[0];
  }

  auto flush_lines = [&](Child& c, bool final) {
    size_t start = 0;
    for (size_t nl; (nl = c.partial.find('\n', start)) != std::string::npos; start = nl + 1)
      on_line(c.rank, c.partial.substr(start, nl - start));
    c.partial.erase(0, start);
    if (final && !c.partial.empty()) {
      on_line(c.rank, c.partial);
      c.partial.clear();
    }
  };
  auto read_output = [&](int timeout_ms) {
    std::vector<pollfd> fds;
    std::vector<Child*> owners;
    for (auto& c : children)
      if (c.out_fd >= 0) {
        fds.push_back({c.out_fd, POLLIN, 0});
        owners.push_back(&c);
      }
    if (fds.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(timeout_ms));
      return;
    }
    const int ready = ::poll(fds.data(), fds.size(), timeout_ms);
    if (ready <= 0) return;
    char buf[65536];
    for (size_t i = 0; i < fds.size(); ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      Child& c = *owners[i];
      const ssize_t got = ::read(c.out_fd, buf, sizeof(buf));
      if (got > 0) {
        c.partial.append(buf, static_cast<size_t>(got));
        flush_lines(c, false);
      } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
        ::close(c.out_fd);
        c.out_fd = -1;
        flush_lines(c, true);
      }
    }
  };
  auto reap = [&]() {
    for (auto& c : children) {
      if (c.exited) continue;
      int st = 0;
      const pid_t got = ::waitpid(c.pid, &st, WNOHANG);
      if (got == c.pid) {
        c.exited = true;
        c.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
      }
    }
  };
  auto all_done = [&]() {
    for (auto& c : children)
      if (!c.exited || c.out_fd >= 0) return false;
    return true;
  };

  int result = 0;
  int failed_rank = -1;
  std::chrono::steady_clock::time_point kill_deadline;
  bool terminating = false, killed = false;
  while (!all_done()) {
    read_output(50);
    reap();
    // A signal to the launcher goes to every rank, which decides what it means (`m2sa train`: finish the step,
    // checkpoint, exit kExitStopped; a second signal ends it at once). No SIGKILL deadline: a checkpoint of a large
    // model may take a while, and a second signal is the way to end things at once.
    if (const int sig = g_forward_signal.exchange(0)) {
      for (auto& c : children)
        if (!c.exited) ::kill(c.pid, sig);
    }
    if (failed_rank < 0) {
      for (auto& c : children) {
        // A rank that stopped on request is not a failure: the others stop at the same step.
        if (c.exited && c.status != 0 && c.status != kExitStopped) {
          failed_rank = c.rank;
          result = c.status;
          break;
        }
      }
      if (failed_rank >= 0) {
        bool others = false;
        for (auto& c : children) others = others || !c.exited;
        if (others && options.stop_others_on_failure) {
          std::fprintf(stderr, "[launcher] rank %d %s; stopping the other ranks\n", failed_rank,
                       describe(result).c_str());
          for (auto& c : children)
            if (!c.exited) ::kill(c.pid, SIGTERM);
        }
        if (!terminating && options.stop_others_on_failure) {
          terminating = true;
          kill_deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(static_cast<int64_t>(options.kill_grace_s * 1000));
        }
      }
    }
    if (terminating && !killed && std::chrono::steady_clock::now() >= kill_deadline) {
      killed = true;
      for (auto& c : children)
        if (!c.exited) ::kill(c.pid, SIGKILL);
    }
    // A child that exited but whose pipe stays open (a grandchild holds it) must not block us forever.
    if (killed) {
      bool all_exited = true;
      for (auto& c : children) all_exited = all_exited && c.exited;
      if (all_exited) {
        for (auto& c : children)
          if (c.out_fd >= 0) {
            ::close(c.out_fd);
            c.out_fd = -1;
            flush_lines(c, true);
          }
      }
    }
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  if (failed_rank >= 0) std::fflush(stdout);
  if (failed_rank < 0)
    for (const auto& c : children)
      if (c.status == kExitStopped) result = kExitStopped;
  return result;
}

}  // namespace m2sa::dist
