// The training-run config of `m2sa train` (train/m2sa_training.h): the shipped configs parse, bad fields are named,
// and the data-parallel sample indexing gives W ranks x G micro-batches the data of one rank with W*G.
#include <gtest/gtest.h>

#include <set>

#include "m2sa/core/error.h"
#include "m2sa/train/m2sa_training.h"
#include "test_util.h"

namespace m2sa::train {
namespace {
namespace fs = std::filesystem;

fs::path config_dir() { return test::repo_root() / "configs" / "train"; }

TEST(TrainM2SAConfig, ShippedConfigsParse) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(config_dir())) {
    if (e.path().extension() != ".json") continue;
    SCOPED_TRACE(e.path().string());
    const TrainingRunConfig c = TrainingRunConfig::read(e.path());
    EXPECT_FALSE(c.run_dir.empty());
    // The resolved config round-trips (it is what train_config.json stores).
    const json j = c.to_json();
    EXPECT_EQ(j.at("train_mode"), c.train_mode == m2sa_model::TrainMode::kFull ? "full" : "lora");
    ++n;
  }
  EXPECT_GE(n, 3);
  const TrainingRunConfig tiny = TrainingRunConfig::read(config_dir() / "tiny-synth.json");
  EXPECT_EQ(tiny.init.from, "scratch");
  EXPECT_EQ(tiny.tokenizer, fs::absolute(test::repo_root() / "configs" / "train" / ".." / "tokenizer"));
  EXPECT_EQ(tiny.resolved_dtype(c10::Device(c10::kCPU)), at::kFloat);
  const TrainingRunConfig seven = TrainingRunConfig::read(config_dir() / "m2sa-7b.json");
  EXPECT_EQ(seven.init.from, "weights");
  EXPECT_EQ(seven.train.lr, 3e-4);
  EXPECT_EQ(seven.train.grad_accumulation_steps, 10);
  EXPECT_EQ(seven.model.llama.hidden_size, 4096);
}

// The reproduction configs ship the reference code's values (MMR train_ds.py: BCE 2.0, DICE 0.5; the paper's text
// says 0.5 / 2.0) and the first-step lr of its pinned DeepSpeed 0.14.0.
TEST(TrainM2SAConfig, ReproductionConfigsUseTheReferenceCodesLossWeightsAndSchedule) {
  for (const char* name : {"m2sa-7b.json", "m2sa-13b.json"}) {
    SCOPED_TRACE(name);
    const TrainingRunConfig c = TrainingRunConfig::read(config_dir() / name);
    EXPECT_EQ(c.loss.ce_loss_weight, 1.0);
    EXPECT_EQ(c.loss.bce_loss_weight, 2.0);
    EXPECT_EQ(c.loss.dice_loss_weight, 0.5);
    EXPECT_EQ(c.train.first_step_lr, "deepspeed-0.14");
    EXPECT_EQ(c.train.warmup_num_steps, 100);
  }
}

void expect_error(const json& j, const std::string& needle) {
  test::TempDir tmp;
  const fs::path f = tmp / "c.json";
  write_json_file(f, j);
  try {
    TrainingRunConfig::read(f);
    ADD_FAILURE() << "no error for " << j.dump();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(TrainM2SAConfig, BadFieldsAreNamed) {
  const json base = read_json_file(config_dir() / "tiny-synth.json");
  auto with = [&](const std::function<void(json&)>& edit) {
    json j = base;
    j["model"] = (test::repo_root() / "configs" / "tiny.json").string();
    j["tokenizer"] = (test::repo_root() / "configs" / "tokenizer").string();
    edit(j);
    return j;
  };
  expect_error(with([](json& j) { j["lr"] = 1; }), "lr");  // unknown top-level field
  expect_error(with([](json& j) { j["train"]["lrr"] = 1; }), "lrr");
  expect_error(with([](json& j) { j.erase("model"); }), "model");
  expect_error(with([](json& j) { j["init"] = {{"from", "weights"}}; }), "init.sam");
  expect_error(with([](json& j) { j["init"] = {{"from", "scratch"}, {"sam", "x.pth"}}; }), "init.sam");
  expect_error(with([](json& j) { j["init"] = {{"from", "magic"}}; }), "init.from");
  expect_error(with([](json& j) { j["precision"] = "fp8"; }), "precision");
  expect_error(with([](json& j) { j["device"] = "tpu"; }), "device");
  expect_error(with([](json& j) { j["images_per_micro_batch"] = 0; }), "images_per_micro_batch");
  expect_error(with([](json& j) { j["export"] = "all"; }), "export");
  expect_error(with([](json& j) { j["train_mode"] = "half"; }), "train_mode");
  expect_error(with([](json& j) { j["model"] = "missing.json"; }), "missing.json");
}

TEST(TrainM2SAConfig, RanksTimesMicroBatchesSeeTheSameSamples) {
  // One rank with 4 micro-batches per step vs 2 ranks x 2 vs 4 ranks x 1: the same samples per step.
  for (int64_t step = 0; step < 3; ++step) {
    std::set<int64_t> one, two, four;
    for (int64_t micro = 0; micro < 4; ++micro) {
      StepInfo s{step, micro, 4, 0, 1, 100};
      for (int64_t i : micro_batch_sample_indices(s, 2)) EXPECT_TRUE(one.insert(i).second);
    }
    for (int rank = 0; rank < 2; ++rank)
      for (int64_t micro = 0; micro < 2; ++micro) {
        StepInfo s{step, micro, 2, rank, 2, 100};
        for (int64_t i : micro_batch_sample_indices(s, 2)) EXPECT_TRUE(two.insert(i).second);
      }
    for (int rank = 0; rank < 4; ++rank) {
      StepInfo s{step, 0, 1, rank, 4, 100};
      for (int64_t i : micro_batch_sample_indices(s, 2)) EXPECT_TRUE(four.insert(i).second);
    }
    EXPECT_EQ(one, two);
    EXPECT_EQ(one, four);
    EXPECT_EQ(*one.begin(), step * 8);
    EXPECT_EQ(*one.rbegin(), step * 8 + 7);
  }
}

}  // namespace
}  // namespace m2sa::train
