#include "m2sa/core/atomic_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "m2sa/core/error.h"
#include "test_util.h"

namespace m2sa {
namespace {

namespace fs = std::filesystem;

TEST(AtomicFile, WritesAndReplacesAFile) {
  test::TempDir dir;
  write_file_atomic(dir / "a.txt", "one");
  write_file_atomic(dir / "a.txt", "two");
  EXPECT_EQ(test::read_bytes(dir / "a.txt"), "two");
  // Only the target is left: no temp file.
  std::size_t entries = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) entries += e.path().filename() == "a.txt" ? 1 : 100;
  EXPECT_EQ(entries, 1u);
}

TEST(AtomicFile, NeverWritesThroughAPlantedTempName) {
  // Temp names used to be predictable (pid and a counter) and opened without O_EXCL: a symlink planted under
  // such a name made the write truncate and overwrite the link's target.
  test::TempDir dir;
  test::write_bytes(dir / "victim", "precious");
  const std::string prefix = ".a.txt.tmp." + std::to_string(::getpid()) + ".";
  for (int i = 0; i < 2000; ++i) fs::create_symlink(dir / "victim", dir / (prefix + std::to_string(i)));
  write_file_atomic(dir / "a.txt", "data");
  EXPECT_EQ(test::read_bytes(dir / "victim"), "precious");
  EXPECT_EQ(test::read_bytes(dir / "a.txt"), "data");
  EXPECT_FALSE(fs::is_symlink(dir / "a.txt"));
}

TEST(AtomicFile, ReplaceDirectorySwapsContents) {
  test::TempDir dir;
  fs::create_directories(dir / "new");
  test::write_bytes(dir / "new" / "f", "1");
  replace_directory(dir / "new", dir / "out");  // no old directory
  EXPECT_EQ(test::read_bytes(dir / "out" / "f"), "1");
  fs::create_directories(dir / "new2");
  test::write_bytes(dir / "new2" / "g", "2");
  replace_directory(dir / "new2", dir / "out");
  EXPECT_EQ(test::read_bytes(dir / "out" / "g"), "2");
  EXPECT_FALSE(fs::exists(dir / "out" / "f"));
  EXPECT_FALSE(fs::exists(dir / "new2"));
  std::size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path())) ++entries;
  EXPECT_EQ(entries, 1u);  // the old contents are gone, nothing moved aside is left
}

TEST(AtomicFile, FailedReplaceKeepsTheOldDirectory) {
  // The old directory used to be moved aside before the new one was renamed in: when that second rename failed
  // (here: the new directory does not exist), the target was gone.
  test::TempDir dir;
  fs::create_directories(dir / "out");
  test::write_bytes(dir / "out" / "f", "old");
  const std::string err = test::m2sa_error_of([&] { replace_directory(dir / "missing", dir / "out"); });
  EXPECT_NE(err.find("missing"), std::string::npos) << err;
  EXPECT_EQ(test::read_bytes(dir / "out" / "f"), "old");
  std::size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path())) ++entries;
  EXPECT_EQ(entries, 1u);
  // A target that is a file, not a directory, is refused and left alone.
  fs::create_directories(dir / "new");
  test::write_bytes(dir / "file", "x");
  EXPECT_NE(test::m2sa_error_of([&] { replace_directory(dir / "new", dir / "file"); }).find("file"), std::string::npos);
  EXPECT_EQ(test::read_bytes(dir / "file"), "x");
  EXPECT_TRUE(fs::is_directory(dir / "new"));
}

}  // namespace
}  // namespace m2sa
