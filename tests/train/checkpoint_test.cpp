#include "m2sa/train/checkpoint.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "m2sa/core/error.h"
#include "test_util.h"

namespace m2sa::train {
namespace {
namespace fs = std::filesystem;

CheckpointData data(int64_t step) {
  CheckpointData d;
  d.step = step;
  d.weights = {{"w", at::full({3}, static_cast<double>(step))}};
  d.optimizer = {{"exp_avg/w", at::zeros({3})}};
  d.optimizer_metadata = {{"format", "m2sa-adamw"}, {"step", std::to_string(step)}};
  d.state = json{{"note", "hello"}};
  return d;
}

std::vector<std::string> names(const std::vector<fs::path>& dirs) {
  std::vector<std::string> out;
  for (const auto& d : dirs) out.push_back(d.filename().string());
  return out;
}

TEST(TrainCheckpoint, SavesLatestKeepsLastKAndTheBest) {
  test::TempDir tmp;
  CheckpointManager m({tmp / "ck", 2, {}});
  EXPECT_FALSE(m.latest().has_value());
  m.save(data(1));
  m.save(data(2), BestCheckpoint{0, "giou", 0.5});
  m.save(data(3));
  m.save(data(4));
  EXPECT_EQ(names(m.step_dirs()), (std::vector<std::string>{"step-000002", "step-000003", "step-000004"}));
  EXPECT_EQ(m.latest()->filename(), "step-000004");
  ASSERT_TRUE(m.best().has_value());
  EXPECT_EQ(m.best()->step, 2);
  EXPECT_EQ(m.best()->value, 0.5);
  m.save(data(5), BestCheckpoint{0, "giou", 0.7});
  EXPECT_EQ(names(m.step_dirs()), (std::vector<std::string>{"step-000004", "step-000005"}));
  LoadedCheckpoint ck = load_checkpoint(*m.latest());
  EXPECT_EQ(ck.state["step"], 5);
  EXPECT_EQ(ck.state["note"], "hello");
  EXPECT_EQ(ck.weights->load("w").sum().item<double>(), 15.0);
  EXPECT_EQ(ck.optimizer->metadata().at("step"), "5");
}

TEST(TrainCheckpoint, PruningNeverDeletesANewerCheckpoint) {
  // A run that saves steps 1 and 2 next to steps 5 and 6 of an earlier run (a resume that did not find them)
  // supersedes neither: keep_last counts only checkpoints up to the one just saved. Step 5 used to go at once.
  test::TempDir tmp;
  CheckpointManager earlier({tmp / "ck", 3, {}});
  earlier.save(data(5));
  earlier.save(data(6));
  CheckpointManager m({tmp / "ck", 1, {}});
  m.save(data(1));
  m.save(data(2));
  EXPECT_EQ(names(m.step_dirs()), (std::vector<std::string>{"step-000002", "step-000005", "step-000006"}));
  EXPECT_EQ(m.latest()->filename(), "step-000002");
}

TEST(TrainCheckpoint, AnInterruptedSaveLeavesNoVisiblePartialCheckpoint) {
  for (const std::string stage : {"weights", "optimizer", "state"}) {
    test::TempDir tmp;
    CheckpointOptions o{tmp / "ck", 3, {}};
    CheckpointManager ok(o);
    ok.save(data(1));
    o.fault_hook = [&](const std::string& s) {
      if (s == stage) throw std::runtime_error("crash at " + s);
    };
    CheckpointManager m(o);
    EXPECT_THROW(m.save(data(2)), std::exception);
    // The failed checkpoint is invisible: only step-000001, which `latest` names. An error (a full disk) also
    // removes its temp dir; one left by a kill is removed by clean_leftovers at the next start (TrainM2SAResume).
    EXPECT_EQ(names(m.step_dirs()), std::vector<std::string>{"step-000001"}) << stage;
    EXPECT_EQ(m.latest()->filename(), "step-000001");
    int hidden = 0;
    for (const auto& e : fs::directory_iterator(tmp / "ck")) hidden += e.path().filename().string()[0] == '.';
    EXPECT_EQ(hidden, 0) << stage;
  }
  // Crash after the rename but before `latest` moved: the new directory is complete, latest still valid.
  test::TempDir tmp;
  CheckpointOptions o{tmp / "ck", 3, [](const std::string& s) {
                        if (s == "renamed") throw std::runtime_error("crash");
                      }};
  CheckpointManager m(o);
  EXPECT_THROW(m.save(data(1)), std::exception);
  EXPECT_FALSE(m.latest().has_value());
  EXPECT_NO_THROW(load_checkpoint(tmp / "ck" / "step-000001"));
}

TEST(TrainCheckpoint, ErrorsNameTheProblem) {
  test::TempDir tmp;
  CheckpointManager m({tmp / "ck", 2, {}});
  m.save(data(7));
  fs::remove(tmp / "ck" / "step-000007" / "optimizer.safetensors");
  try {
    load_checkpoint(tmp / "ck" / "step-000007");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("optimizer.safetensors is missing"), std::string::npos) << e.what();
  }
  test::write_bytes(tmp / "ck" / "latest", "step-000009\n");
  EXPECT_THROW(m.latest(), Error);
  test::write_bytes(tmp / "ck" / "latest", "garbage");
  EXPECT_THROW(m.latest(), Error);
  EXPECT_THROW(CheckpointManager({tmp / "ck", 0, {}}), Error);
}

}  // namespace
}  // namespace m2sa::train
