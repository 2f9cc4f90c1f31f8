#pragma once
// Process-wide runtime defaults measured in ../shared/spec/TOOLCHAIN.md:
// - LibTorch picks 1 intra-op thread on these VMs (cpuinfo miscounts cores): use every core unless the user set
//   OMP_NUM_THREADS / M2SA_NUM_THREADS.
// - Fresh large allocations page-fault slowly; glibc's `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` makes them
//   10-20x cheaper. It must be set before the process starts, so the CLI re-executes itself once with it
//   (`reexec_with_malloc_tunables`); set M2SA_NO_REEXEC=1 to opt out.
#include <string>

namespace m2sa {

struct RuntimeInfo {
  int threads = 1;
  bool hugetlb_malloc = false;
};

// Sets the LibTorch thread count and spdlog's level ("info" unless M2SA_LOG_LEVEL says otherwise).
RuntimeInfo init_runtime();

// If GLIBC_TUNABLES is unset, sets it and execv()s /proc/self/exe with the same argv. Returns only if no
// re-exec happened (already set, opted out, or exec failed).
void reexec_with_malloc_tunables(int argc, char** argv);

// Number of threads to use: M2SA_NUM_THREADS, then OMP_NUM_THREADS, then the machine's hardware threads.
int default_thread_count();

}  // namespace m2sa
