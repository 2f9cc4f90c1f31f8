// `m2sa eval` end to end through the CLI: a tiny model exported in the merged HF layout, a small synthetic dataset;
// the reports equal what eval::evaluate computes in process, several splits share one call, a training config gives
// the defaults, and bad input is a clear error with a non-zero exit.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include "infer/infer_test_util.h"
#include "m2sa/core/json_reader.h"
#include "m2sa/data/eval_datasets.h"
#include "m2sa/data/synth.h"
#include "m2sa/eval/evaluator.h"
#include "m2sa/infer/model_export.h"
#include "m2sa/infer/model_loading.h"
#include "test_util.h"

namespace m2sa {
namespace {
namespace fs = std::filesystem;

class EvalCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir("m2sa_eval_cli");
    data::SynthOptions so;
    so.train_images = 2;
    so.val_images = 5;
    so.test_images = 3;
    so.min_size = 96;
    so.max_size = 144;
    data::write_synthetic_dataset(dataset(), so);
    infer::ExportOptions eo;
    eo.dtype = at::kFloat;
    m2sa_model::M2SAForCausalLM model = test::tiny_model(7);
    model->eval();
    infer::export_model(*model, test::tiny_tokenizer(), model_dir(), eo);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static fs::path dataset() { return *dir_ / "dataset"; }
  static fs::path model_dir() { return *dir_ / "model"; }
  static fs::path tmp(const std::string& name) { return *dir_ / name; }

  // The CLI runs with this process's thread count, so that its floating-point sums match the in-process ones.
  static test::CliResult eval(std::vector<std::string> args) {
    args.insert(args.begin(), "eval");
    return test::run_cli(args, "M2SA_NUM_THREADS=" + std::to_string(at::get_num_threads()));
  }

  static test::TempDir* dir_;
};
test::TempDir* EvalCli::dir_ = nullptr;

TEST_F(EvalCli, ReportsEqualTheInProcessEvaluation) {
  const fs::path out = tmp("val.json");
  const auto r = eval({"--model", model_dir().string(), "--dataset-dir", dataset().string(), "--split", "val",
                       "--batch", "2", "--out", out.string()});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("gIoU"), std::string::npos) << r.output;
  const json report = read_json_file(out);
  EXPECT_EQ(report.at("split"), "val");
  EXPECT_EQ(report.at("mode"), "teacher-forced");
  EXPECT_EQ(report.at("world_size"), 1);
  for (const char* k : {"giou", "ciou", "counts", "seg_count", "categories", "timing", "protocol"})
    EXPECT_TRUE(report.contains(k)) << k;

  infer::ModelSource src;
  src.model_dir = model_dir();
  const infer::LoadedModel loaded = infer::load_model(src);
  const auto ds = data::make_eval_dataset("val", dataset());
  eval::EvaluateOptions eo;
  eo.images_per_batch = 2;  // as --batch 2: padding to the batch's longest prompt changes the float sums slightly
  eo.log_progress = false;
  const eval::SegMeter m = eval::evaluate(loaded.model, loaded.tokenizer, *ds, eo);
  EXPECT_NEAR(report.at("giou").get<double>(), m.giou(), 1e-9);
  EXPECT_NEAR(report.at("ciou").get<double>(), m.ciou(), 1e-9);
  EXPECT_EQ(report.at("counts").at("images_seen").get<int64_t>(), ds->size());
  EXPECT_EQ(report.at("counts").at("masks_scored").get<double>(), m.sums()[eval::MetricSums::kMasks]);
  EXPECT_GT(m.sums()[eval::MetricSums::kMasks], 0);
}

TEST_F(EvalCli, SeveralSplitsAndGenerateModeInOneCall) {
  const fs::path out = tmp("several");
  const auto r = eval({"--model", model_dir().string(), "--dataset-dir", dataset().string(), "--split",
                       "test/obj,test/part", "--split", "test/mixed", "--mode", "generate", "--max-new-tokens", "8",
                       "--out", out.string()});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* name : {"test_obj", "test_part", "test_mixed"}) {
    const fs::path f = out / (std::string(name) + "_generate.json");
    ASSERT_TRUE(fs::exists(f)) << f << "\n" << r.output;
    const json report = read_json_file(f);
    EXPECT_EQ(report.at("mode"), "generate");
    const json& c = report.at("seg_count");
    // Every image is counted in exactly one [SEG]-count class.
    EXPECT_EQ(c.at("exact").get<int64_t>() + c.at("too_few").get<int64_t>() + c.at("too_many").get<int64_t>(),
              report.at("counts").at("images_seen").get<int64_t>());
  }
}

TEST_F(EvalCli, TrainingConfigGivesTheDefaults) {
  // A training run's config: --model defaults to <run_dir>/model, --dataset-dir to data.dataset_dir.
  json c = read_json_file(test::repo_root() / "configs" / "train" / "tiny-synth.json");
  c["model"] = (test::repo_root() / "configs" / "tiny.json").string();
  c["tokenizer"] = (test::repo_root() / "configs" / "tokenizer").string();
  c["data"]["dataset_dir"] = dataset().string();
  c["run_dir"] = tmp("run").string();
  fs::create_directories(tmp("run"));
  fs::create_directory_symlink(model_dir(), tmp("run") / "model");
  const fs::path config = tmp("train.json");
  write_json_file(config, c);
  const auto r = eval({"--config", config.string(), "--split", "val", "--limit", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(model_dir() / "eval" / "val_teacher-forced.json")) << r.output;
}

TEST_F(EvalCli, BadInputIsAClearError) {
  const std::string m = model_dir().string(), d = dataset().string();
  struct Case {
    std::vector<std::string> args;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {{"--model", m, "--dataset-dir", d, "--split", "tset/obj"}, "tset/obj"},
      {{"--model", m, "--dataset-dir", d, "--split", "val", "--batch", "0"}, "--batch"},
      {{"--model", m, "--dataset-dir", d, "--split", "val", "--mode", "guess"}, "guess"},
      {{"--model", tmp("no-model").string(), "--dataset-dir", d, "--split", "val"}, "no-model"},
      {{"--model", m, "--dataset-dir", tmp("no-data").string(), "--split", "val"}, "no-data"},
      {{"--config", tmp("no-config.json").string(), "--split", "val"}, "no-config.json"},
      {{"--model", m, "--split", "val"}, "--dataset-dir"},
      {{"--dataset-dir", d, "--split", "val"}, "--model"},
  };
  for (const Case& c : cases) {
    const auto r = eval(c.args);
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find(c.expected), std::string::npos) << "expected \"" << c.expected << "\" in:\n" << r.output;
    EXPECT_EQ(r.output.find("terminate called"), std::string::npos) << r.output;
  }
}

}  // namespace
}  // namespace m2sa
