#include "m2sa/core/runtime.h"

#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>
#include <torch/csrc/api/include/torch/version.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

// m2sa supports LibTorch >= 2.1 only (cmake/TorchChecks.cmake checks it too): the code calls the public
// at::scaled_dot_product_attention and has no 1.13 branches left. A build whose version macros are missing would
// otherwise fail far from the cause.
#if !defined(TORCH_VERSION_MAJOR) || !defined(TORCH_VERSION_MINOR)
#error "torch/version.h did not define TORCH_VERSION_MAJOR/MINOR: m2sa needs LibTorch >= 2.1"
#elif TORCH_VERSION_MAJOR < 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR < 1)
#error "m2sa needs LibTorch >= 2.1 (at::scaled_dot_product_attention); see docs/DEVELOPING.md"
#endif

namespace m2sa {

int default_thread_count() {
  for (const char* var : {"M2SA_NUM_THREADS", "OMP_NUM_THREADS"}) {
    if (const char* v = std::getenv(var)) {
      int n = std::atoi(v);
      if (n > 0) return n;
    }
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

RuntimeInfo init_runtime() {
  RuntimeInfo info;
  info.threads = default_thread_count();
  if (at::get_num_threads() != info.threads) at::set_num_threads(info.threads);
  const char* tun = std::getenv("GLIBC_TUNABLES");
  info.hugetlb_malloc = tun && std::strstr(tun, "glibc.malloc.hugetlb=1");
  if (const char* lvl = std::getenv("M2SA_LOG_LEVEL")) {
    spdlog::set_level(spdlog::level::from_str(lvl));
  }
  return info;
}

std::string malloc_tunables_to_set(const char* user_tunables, const std::string& thp_mode) {
  const std::string user = user_tunables != nullptr ? user_tunables : "";
  if (user.find("glibc.malloc.hugetlb") != std::string::npos) return "";
  if (thp_mode.find("[never]") != std::string::npos) return "";
  return user.empty() ? "glibc.malloc.hugetlb=1" : user + ":glibc.malloc.hugetlb=1";
}

void reexec_with_malloc_tunables(int argc, char** argv) {
  (void)argc;
  if (std::getenv("M2SA_NO_REEXEC")) return;
  std::string thp;
  std::getline(std::ifstream("/sys/kernel/mm/transparent_hugepage/enabled"), thp);
  const char* user = std::getenv("GLIBC_TUNABLES");
  const std::string before = user != nullptr ? user : "";
  const std::string tunables = malloc_tunables_to_set(user, thp);
  if (tunables.empty()) return;
  ::setenv("GLIBC_TUNABLES", tunables.c_str(), 1);
  ::execv("/proc/self/exe", argv);
  // exec failed: carry on as we were (only slower).
  if (user != nullptr)
    ::setenv("GLIBC_TUNABLES", before.c_str(), 1);
  else
    ::unsetenv("GLIBC_TUNABLES");
}

}  // namespace m2sa
