// `m2sa eval --nproc 2` (two Gloo ranks through the local launcher) gives exactly the totals of one process, on
// splits whose item counts do not divide by 2 (every item scored once: no sampler padding), in both modes; only
// rank 0 prints and writes.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "eval/eval_cli_world.h"
#include "m2sa/dist/communicator.h"

namespace m2sa::test {
namespace {
namespace fs = std::filesystem;

size_t count_of(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t p = text.find(needle); p != std::string::npos; p = text.find(needle, p + 1)) ++n;
  return n;
}

// Runs the same evaluation with 1 and 2 processes and compares the reports.
void expect_two_ranks_equal_one(const EvalCliWorld& w, const fs::path& model_dir,
                                const std::vector<std::string>& splits, const std::vector<std::string>& extra_args) {
  TempDir out("m2sa_eval_dist");
  std::string split_list;
  for (const auto& s : splits) split_list += (split_list.empty() ? "" : ",") + s;
  std::vector<std::string> base = {"eval", "--model", model_dir.string(), "--dataset-dir", w.dataset_dir.string(),
                                   "--split", split_list, "--batch", "2"};
  base.insert(base.end(), extra_args.begin(), extra_args.end());
  auto run = [&](int nproc) {
    std::vector<std::string> args = base;
    args.insert(args.end(), {"--nproc", std::to_string(nproc), "--out", (out / std::to_string(nproc)).string() + "/"});
    const CliResult r = run_cli(args, "M2SA_NUM_THREADS=1 OMP_NUM_THREADS=1");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return r;
  };
  const CliResult one = run(1), two = run(2);
  // Only rank 0 writes the report lines (prefixed by the launcher).
  EXPECT_EQ(count_of(two.output, "report: "), splits.size()) << two.output;
  EXPECT_EQ(count_of(two.output, "[rank 1] split "), 0u) << two.output;
  for (const std::string& split : splits) {
    SCOPED_TRACE(split);
    std::string stem = split;
    for (char& c : stem)
      if (c == '/') c = '_';
    const std::string mode = two.output.find("mode generate") != std::string::npos ? "generate" : "teacher-forced";
    const std::string name = stem + "_" + mode + ".json";
    const json a = read_json(out / "1" / name), b = read_json(out / "2" / name);
    ASSERT_FALSE(a.empty() || b.empty());
    EXPECT_EQ(a.at("world_size"), 1);
    EXPECT_EQ(b.at("world_size"), 2);
    EXPECT_EQ(a.at("counts").at("images_seen").get<int64_t>() % 2, 1) << "the split should not divide by 2";
    EXPECT_EQ(a.at("giou").get<double>(), b.at("giou").get<double>());
    EXPECT_EQ(a.at("ciou").get<double>(), b.at("ciou").get<double>());
    for (const char* key : {"counts", "seg_count", "categories", "sums"}) EXPECT_EQ(a.at(key), b.at(key)) << key;
    EXPECT_GT(a.at("giou").get<double>(), 0.0);
    if (mode == "generate") {
      EXPECT_EQ(a.at("extra").at("generation"), b.at("extra").at("generation"));
      EXPECT_GT(a.at("counts").at("extra_predictions").get<int64_t>(), 0);
    }
    std::printf("%s %s: 1 proc gIoU %.17g cIoU %.17g, 2 procs gIoU %.17g cIoU %.17g (%lld images, %lld masks)\n",
                split.c_str(), mode.c_str(), a.at("giou").get<double>(), a.at("ciou").get<double>(),
                b.at("giou").get<double>(), b.at("ciou").get<double>(),
                static_cast<long long>(a.at("counts").at("images_seen").get<int64_t>()),
                static_cast<long long>(a.at("counts").at("masks_scored").get<int64_t>()));
  }
}

EvalCliWorld& world() {
  static EvalCliWorld w(/*val_images=*/5, /*test_images=*/3);
  return w;
}

TEST(EvalDist, TwoRanksGiveTheTotalsOfOneProcessTeacherForced) {
  if (!dist::gloo_available()) GTEST_SKIP() << "this LibTorch has no Gloo";
  expect_two_ranks_equal_one(world(), world().model_dir, {"val", "test/part"}, {});
}

TEST(EvalDist, TwoRanksGiveTheTotalsOfOneProcessGenerate) {
  if (!dist::gloo_available()) GTEST_SKIP() << "this LibTorch has no Gloo";
  expect_two_ranks_equal_one(world(), world().seg_model_dir, {"test/mixed"},
                             {"--mode", "generate", "--max-new-tokens", "4"});
}

}  // namespace
}  // namespace m2sa::test
