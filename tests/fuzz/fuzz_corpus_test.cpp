// Replays the fuzz corpus through the fuzz targets (fuzz/*_fuzz.cpp, built here without libFuzzer): every seed of
// fuzz/corpus/<target>/ and every input that once crashed a reader, fuzz/regressions/<target>/. A reader that
// crashes, throws anything but m2sa::Error or breaks a target's invariant (abort) fails this binary.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz_target.h"

namespace {

namespace fs = std::filesystem;

const fs::path kFuzzDir = fs::path(M2SA_SOURCE_DIR) / "fuzz";

std::vector<std::string> target_names() {
  std::vector<std::string> names;
  for (const auto& [name, fn] : m2sa::fuzz::registry()) names.push_back(name);
  return names;
}

std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> files;
  if (!fs::is_directory(dir)) return files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

std::string read_fuzz_input(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class FuzzReplay : public ::testing::TestWithParam<std::string> {};

TEST_P(FuzzReplay, SeedsAndRegressions) {
  const std::string& name = GetParam();
  const m2sa::fuzz::TargetFn fn = m2sa::fuzz::registry().at(name);
  const auto seeds = files_in(kFuzzDir / "corpus" / name);
  EXPECT_FALSE(seeds.empty()) << "fuzz/corpus/" << name << "/ holds no seed";
  auto inputs = seeds;
  const auto regressions = files_in(kFuzzDir / "regressions" / name);
  inputs.insert(inputs.end(), regressions.begin(), regressions.end());
  for (const fs::path& path : inputs) {
    SCOPED_TRACE(path.string());
    const std::string bytes = read_fuzz_input(path);
    // The target itself swallows m2sa::Error; anything else reaching here is a finding.
    EXPECT_NO_THROW(fn(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  }
  // The empty input, which every fuzzer tries first.
  EXPECT_NO_THROW(fn(nullptr, 0));
}

INSTANTIATE_TEST_SUITE_P(Targets, FuzzReplay, ::testing::ValuesIn(target_names()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

#if M2SA_FUZZ_ALL_TARGETS
// Every folder of fuzz/corpus and fuzz/regressions belongs to a target (a renamed target would otherwise leave its
// inputs unreplayed). Only in the full build: the core tier leaves the data-layer targets out.
TEST(FuzzCorpus, FoldersNameTargets) {
  for (const char* kind : {"corpus", "regressions"}) {
    if (!fs::is_directory(kFuzzDir / kind)) continue;
    for (const auto& e : fs::directory_iterator(kFuzzDir / kind))
      EXPECT_TRUE(m2sa::fuzz::registry().count(e.path().filename().string()))
          << "fuzz/" << kind << "/" << e.path().filename().string() << " names no fuzz target";
  }
}
#endif

}  // namespace
