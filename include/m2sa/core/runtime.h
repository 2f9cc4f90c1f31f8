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

// The GLIBC_TUNABLES value to re-execute with, "" when no re-exec is needed: the user's tunables (kept) plus
// glibc.malloc.hugetlb=1, unless they already set it (or a re-exec did), or transparent huge pages are off
// (`thp_mode`, the text of /sys/kernel/mm/transparent_hugepage/enabled: "[never]" means the tunable cannot help).
std::string malloc_tunables_to_set(const char* user_tunables, const std::string& thp_mode);

// Re-executes /proc/self/exe with the same argv when malloc_tunables_to_set says so. Returns only if no re-exec
// happened (not needed, opted out with M2SA_NO_REEXEC, or exec failed).
void reexec_with_malloc_tunables(int argc, char** argv);

// Number of threads to use: M2SA_NUM_THREADS, then OMP_NUM_THREADS, then the machine's hardware threads.
int default_thread_count();

}  // namespace m2sa
