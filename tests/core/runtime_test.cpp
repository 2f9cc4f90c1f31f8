#include "m2sa/core/runtime.h"

#include <gtest/gtest.h>

namespace m2sa {
namespace {

// The CLI's re-exec keeps the user's tunables, adds the malloc one once, and is skipped where it cannot help.
TEST(Runtime, MallocTunablesAreAppendedOnceAndOnlyWhereTheyHelp) {
  const std::string madvise = "always [madvise] never", always = "[always] madvise never", never = "always madvise [never]";
  EXPECT_EQ(malloc_tunables_to_set(nullptr, madvise), "glibc.malloc.hugetlb=1");
  EXPECT_EQ(malloc_tunables_to_set("", always), "glibc.malloc.hugetlb=1");
  EXPECT_EQ(malloc_tunables_to_set("glibc.malloc.arena_max=2", madvise),
            "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1");
  EXPECT_EQ(malloc_tunables_to_set("glibc.malloc.hugetlb=0", madvise), "") << "the user's choice wins";
  EXPECT_EQ(malloc_tunables_to_set("glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1", madvise), "")
      << "already re-executed";
  EXPECT_EQ(malloc_tunables_to_set(nullptr, never), "") << "no transparent huge pages: nothing to gain";
  EXPECT_EQ(malloc_tunables_to_set(nullptr, ""), "glibc.malloc.hugetlb=1") << "unknown THP mode: try";
}

}  // namespace
}  // namespace m2sa
