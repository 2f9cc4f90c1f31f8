#include "m2sa/train/trainer.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <fstream>

#include "m2sa/core/error.h"
#include "test_util.h"
#include "train/toy_task.h"

namespace m2sa::train {
namespace {
namespace fs = std::filesystem;

std::vector<json> read_jsonl(const fs::path& p) {
  std::vector<json> out;
  std::ifstream in(p);
  for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
  return out;
}

// The metrics file reads as one run: one line per step 1..steps, in order, none twice.
void expect_one_line_per_step(const fs::path& metrics, int64_t steps) {
  const std::vector<json> lines = read_jsonl(metrics);
  ASSERT_EQ(lines.size(), static_cast<size_t>(steps));
  for (size_t i = 0; i < lines.size(); ++i) EXPECT_EQ(lines[i]["step"], static_cast<int64_t>(i + 1));
}

double max_diff(const NamedTensors& a, const NamedTensors& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    worst = std::max(worst, test::max_abs_diff(a[i].second, b[i].second));
  }
  return worst;
}

TEST(TrainTrainer, ToyModelLearnsAndLogs) {
  test::TempDir dir;
  test::ToyOptions o;
  o.steps = 40;
  o.grad_accumulation_steps = 2;
  o.micro_batch = 4;
  o.lr = 1e-2;
  o.warmup = 5;
  o.validate = true;
  o.checkpoint_every = 0;
  auto comm = dist::make_local_communicator();
  test::ToyRun run = test::run_toy(o, *comm, dir.path());
  ASSERT_EQ(run.reports.size(), 40u);
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) first += run.reports[i].loss / 5;
  for (int i = 35; i < 40; ++i) last += run.reports[i].loss / 5;
  EXPECT_LT(last, 0.7 * first) << "loss did not go down: " << first << " -> " << last;
  EXPECT_DOUBLE_EQ(run.reports[0].lr, 0.0);  // first_step "deepspeed-0.15.3": warmup starts at 0
  EXPECT_DOUBLE_EQ(run.reports[5].lr, 1e-2 * 4 / 5);
  EXPECT_EQ(run.reports[0].samples, 8);
  ASSERT_EQ(run.reports[0].parts.size(), 2u);
  EXPECT_EQ(run.reports[0].parts[0].first, "mask_bce");
  EXPECT_NEAR(run.reports[0].loss, run.reports[0].parts[0].second + run.reports[0].parts[1].second, 1e-6);
  // One JSON line per step plus the validation at the end of the epoch.
  std::vector<json> lines = read_jsonl(dir / "metrics.jsonl");
  ASSERT_EQ(lines.size(), 41u);
  EXPECT_EQ(lines[0]["type"], "train");
  EXPECT_EQ(lines[0]["step"], 1);
  EXPECT_TRUE(lines[0].contains("samples_per_s") && lines[0].contains("mask_dice") && lines[0].contains("lr"));
  EXPECT_EQ(lines[40]["type"], "val");
  EXPECT_GT(lines[40]["giou"].get<double>(), 0.5);
  ASSERT_TRUE(run.summary.best.has_value());
  EXPECT_EQ(run.summary.best->step, 40);
  CheckpointManager m({dir / "checkpoints", 2, {}});
  EXPECT_EQ(m.latest()->filename(), "step-000040");
  EXPECT_EQ(m.best()->metric, "giou");
}

TEST(TrainTrainer, ResumeContinuesBitForBit) {
  test::ToyOptions o;
  o.steps = 8;
  o.dropout = 0.2;  // exercises the torch CPU generator state
  o.weight_decay = 0.01;
  auto comm = dist::make_local_communicator();
  test::TempDir a, b;
  test::ToyRun full = test::run_toy(o, *comm, a.path());
  // Interrupted after step 5 (its checkpoint is written; step 6 is cut short before its own).
  ASSERT_TRUE(test::run_toy_until_killed(o, *comm, b.path(), 6));
  CheckpointManager m({b / "checkpoints", 2, {}});
  EXPECT_EQ(m.latest()->filename(), "step-000005");
  at::manual_seed(999);  // a different RNG state in the process must not matter
  test::ToyRun resumed = test::run_toy(o, *comm, b.path(), /*resume=*/true);
  EXPECT_EQ(resumed.summary.start_step, 5);
  EXPECT_EQ(resumed.reports.size(), 3u);
  EXPECT_EQ(max_diff(full.masters, resumed.masters), 0.0);
  EXPECT_EQ(resumed.reports.back().loss, full.reports.back().loss);
  expect_one_line_per_step(b / "metrics.jsonl", 8);
}

// A stop request (SIGTERM in `m2sa train`) seen during step 4 ends the run after that step with its checkpoint
// (checkpoints are otherwise written at epoch ends only here); the resumed run ends bit for bit where an
// uninterrupted one does.
TEST(TrainTrainer, StopRequestCheckpointsTheStepAndResumesExactly) {
  test::ToyOptions o;
  o.steps = 8;
  o.checkpoint_every = 0;
  auto comm = dist::make_local_communicator();
  test::TempDir a, b;
  const test::ToyRun full = test::run_toy(o, *comm, a.path());
  int64_t polls = 0;
  test::ToyOptions stopping = o;
  stopping.stop_requested = [&polls] { return ++polls >= 4; };
  const test::ToyRun stopped = test::run_toy(stopping, *comm, b.path());
  EXPECT_TRUE(stopped.summary.stopped);
  EXPECT_EQ(stopped.summary.end_step, 4);
  CheckpointManager m({b / "checkpoints", 2, {}});
  ASSERT_EQ(m.step_dirs().size(), 1u);
  EXPECT_EQ(m.latest()->filename(), "step-000004");
  const test::ToyRun resumed = test::run_toy(o, *comm, b.path(), /*resume=*/true);
  EXPECT_FALSE(resumed.summary.stopped);
  EXPECT_EQ(resumed.summary.start_step, 4);
  EXPECT_EQ(max_diff(full.masters, resumed.masters), 0.0);
  expect_one_line_per_step(b / "metrics.jsonl", 8);
  // A request during the last step is just the end of the run.
  test::TempDir c;
  stopping.stop_requested = [] { return true; };
  stopping.steps = 1;
  EXPECT_FALSE(test::run_toy(stopping, *comm, c.path()).summary.stopped);
}

TEST(TrainTrainer, ResumeWithoutTheLatestPointerContinuesFromTheNewestCheckpoint) {
  // A run interrupted after its step-5 checkpoint, whose `latest` pointer is then lost: --resume used to start
  // from step 0, empty metrics.jsonl and prune the old checkpoints.
  test::ToyOptions o;
  o.steps = 8;
  auto comm = dist::make_local_communicator();
  test::TempDir a, b;
  test::ToyRun full = test::run_toy(o, *comm, a.path());
  ASSERT_TRUE(test::run_toy_until_killed(o, *comm, b.path(), 6));
  ASSERT_TRUE(fs::remove(b / "checkpoints" / "latest"));
  const std::size_t lines_before = read_jsonl(b / "metrics.jsonl").size();
  ASSERT_GE(lines_before, 5u);
  test::ToyRun resumed = test::run_toy(o, *comm, b.path(), /*resume=*/true);
  EXPECT_EQ(resumed.summary.start_step, 5);
  EXPECT_EQ(resumed.reports.size(), 3u);
  EXPECT_EQ(max_diff(full.masters, resumed.masters), 0.0);
  expect_one_line_per_step(b / "metrics.jsonl", 8);
}

TEST(TrainTrainer, ResumeRefusesStepDirectoriesWithoutACompleteCheckpoint) {
  test::ToyOptions o;
  o.steps = 4;
  auto comm = dist::make_local_communicator();
  test::TempDir b;
  EXPECT_THROW(test::run_toy(o, *comm, b.path(), false, {},
                             [](const StepReport& r) {
                               if (r.step == 3) throw std::runtime_error("interrupted");
                             }),
               std::runtime_error);
  // Both checkpoints lose a file and the pointer is gone: nothing to resume from, and nothing to overwrite.
  ASSERT_TRUE(fs::remove(b / "checkpoints" / "latest"));
  for (const char* step : {"step-000001", "step-000002"})
    ASSERT_TRUE(fs::remove(b / "checkpoints" / step / "optimizer.safetensors"));
  const std::string metrics = test::read_bytes(b / "metrics.jsonl");
  const std::string err = test::m2sa_error_of([&] { test::run_toy(o, *comm, b.path(), /*resume=*/true); });
  EXPECT_NE(err.find("none of the 2 step-* directories"), std::string::npos) << err;
  EXPECT_TRUE(fs::is_directory(b / "checkpoints" / "step-000001"));
  EXPECT_TRUE(fs::is_directory(b / "checkpoints" / "step-000002"));
  EXPECT_EQ(test::read_bytes(b / "metrics.jsonl"), metrics);
}

TEST(TrainTrainer, Bf16WeightsTrainThroughFp32MastersAndResumeExactly) {
  test::ToyOptions o;
  o.bf16 = true;
  o.steps = 12;
  o.micro_batch = 4;
  o.lr = 3e-3;  // updates far below bf16's resolution near 1: they must accumulate in the fp32 masters
  auto comm = dist::make_local_communicator();
  test::TempDir a, b;
  test::ToyRun full = test::run_toy(o, *comm, a.path());
  double first = full.reports[1].loss, last = full.reports.back().loss;
  EXPECT_LT(last, first);
  bool any_between = false;
  for (size_t i = 0; i < full.params.size(); ++i) {
    EXPECT_EQ(full.params[i].second.scalar_type(), at::kBFloat16);
    EXPECT_EQ(full.masters[i].second.scalar_type(), at::kFloat);
    EXPECT_TRUE(at::equal(full.params[i].second, full.masters[i].second.to(at::kBFloat16))) << full.params[i].first;
    any_between = any_between || !at::equal(full.params[i].second.to(at::kFloat), full.masters[i].second);
  }
  EXPECT_TRUE(any_between) << "the masters should hold precision the bf16 weights do not";
  EXPECT_THROW(test::run_toy(o, *comm, b.path(), false, {},
                             [](const StepReport& r) {
                               if (r.step == 7) throw std::runtime_error("interrupted");
                             }),
               std::runtime_error);
  test::ToyRun resumed = test::run_toy(o, *comm, b.path(), true);
  EXPECT_EQ(resumed.summary.start_step, 6);
  EXPECT_EQ(max_diff(full.masters, resumed.masters), 0.0);
  EXPECT_EQ(max_diff(full.params, resumed.params), 0.0);
}

TEST(TrainTrainer, NonFiniteLossStopsNamingStepAndSources) {
  test::ToyOptions o;
  o.steps = 6;
  o.grad_accumulation_steps = 2;
  o.nan_at_global_micro = 5;  // step 3, micro-batch 1
  auto comm = dist::make_local_communicator();
  test::TempDir dir;
  try {
    test::run_toy(o, *comm, dir.path());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("non-finite loss at step 3 of 6"), std::string::npos) << msg;
    EXPECT_NE(msg.find("micro-batch 1: loss nan"), std::string::npos) << msg;
    EXPECT_NE(msg.find("batch sources: toy:"), std::string::npos) << msg;
  }
}

TEST(TrainTrainer, RefusesToMixRunsAndForeignCheckpoints) {
  test::ToyOptions o;
  o.steps = 2;
  auto comm = dist::make_local_communicator();
  test::TempDir dir;
  test::run_toy(o, *comm, dir.path());
  try {
    test::run_toy(o, *comm, dir.path());  // not resuming into a directory with checkpoints
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("already holds checkpoints"), std::string::npos) << e.what();
  }
  o.hidden = 32;  // fc1/fc2 change shape
  try {
    test::run_toy(o, *comm, dir.path(), true);
    FAIL();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("'fc1.weight' is [64, 512] in the checkpoint but [32, 512] in the model"), std::string::npos)
        << msg;
  }
}

TEST(TrainTrainer, ConfigIsStrictAndValidated) {
  json j = {{"epochs", 2}, {"steps_per_epoch", 3}, {"lr", 1e-3}, {"warmup_type", "linear"}};
  TrainerConfig c = TrainerConfig::from_json(JsonReader(j, "train.json"));
  EXPECT_EQ(c.total_steps(), 6);
  EXPECT_EQ(c.beta2, 0.95);
  EXPECT_EQ(c.schedule().warmup_max_lr, 1e-3);
  json round = c.to_json();
  EXPECT_EQ(TrainerConfig::from_json(JsonReader(round, "x")).to_json(), round);
  json typo = {{"grad_accumulation", 2}};
  EXPECT_THROW(TrainerConfig::from_json(JsonReader(typo, "train.json")), Error);
  json bad = {{"warmup_type", "cosine"}};
  EXPECT_THROW(TrainerConfig::from_json(JsonReader(bad, "train.json")), Error);
  json neg = {{"grad_accumulation_steps", 0}};
  EXPECT_THROW(TrainerConfig::from_json(JsonReader(neg, "train.json")), Error);
}

}  // namespace
}  // namespace m2sa::train
