#include "m2sa/train/lr_schedule.h"

#include <gtest/gtest.h>

#include <cmath>

#include "m2sa/core/error.h"

namespace m2sa::train {
namespace {

LrScheduleConfig mmr() {
  LrScheduleConfig c;  // MMR:train_ds.py: 3e-4, 100 warmup steps, 10 x 500 steps, linear
  c.warmup_max_lr = 3e-4;
  c.warmup_num_steps = 100;
  c.total_num_steps = 5000;
  return c;
}

TEST(TrainLrSchedule, DefaultWarmupStartsAtZero) {
  EXPECT_EQ(LrScheduleConfig().first_step, "deepspeed-0.15.3");
  WarmupDecayLR s(mmr());
  EXPECT_DOUBLE_EQ(s.lr_for_step(0), 0.0);
  EXPECT_DOUBLE_EQ(s.lr_for_step(1), 0.0);
  EXPECT_DOUBLE_EQ(s.lr_for_step(2), 3e-4 * 1 / 100);
}

TEST(TrainLrSchedule, DeepSpeed014WarmupDecayAsConfiguredByMmr) {
  LrScheduleConfig c = mmr();
  c.first_step = "deepspeed-0.14";
  WarmupDecayLR s(c);
  // Step 1 runs before the scheduler was ever stepped: DeepSpeed 0.14.0 leaves the optimizer's lr (= max).
  EXPECT_DOUBLE_EQ(s.lr_for_step(0), 3e-4);
  // Step k runs with DeepSpeed's last_batch_iteration = k - 2.
  EXPECT_DOUBLE_EQ(s.lr_for_step(1), 0.0);              // iteration 0
  EXPECT_DOUBLE_EQ(s.lr_for_step(2), 3e-4 * 1 / 100);   // iteration 1
  EXPECT_DOUBLE_EQ(s.lr_for_step(51), 3e-4 * 50 / 100);
  EXPECT_DOUBLE_EQ(s.lr_for_step(100), 3e-4 * 99 / 100);
  EXPECT_DOUBLE_EQ(s.lr_for_step(101), 3e-4);           // iteration 100: (5000-100)/4900
  EXPECT_DOUBLE_EQ(s.lr_for_step(2551), 3e-4 * (5000.0 - 2550) / 4900);
  EXPECT_DOUBLE_EQ(s.lr_for_step(4999), 3e-4 * 2.0 / 4900);  // the 5000th (last) step
  EXPECT_DOUBLE_EQ(s.lr_for_step(5001), 0.0);
  EXPECT_DOUBLE_EQ(s.lr_for_step(9000), 0.0);
}

TEST(TrainLrSchedule, NewerDeepSpeedFirstStepAndLogWarmup) {
  LrScheduleConfig c = mmr();
  c.first_step = "deepspeed-0.15.3";
  EXPECT_DOUBLE_EQ(WarmupDecayLR(c).lr_for_step(0), 0.0);
  c.warmup_type = "log";  // DeepSpeed's default when a config does not say
  WarmupDecayLR s(c);
  EXPECT_DOUBLE_EQ(s.gamma(0), 0.0);
  EXPECT_NEAR(s.gamma(9), std::log(10.0) / std::log(100.0), 1e-15);
  EXPECT_DOUBLE_EQ(s.gamma(99), 1.0);
  // warmup_num_steps is raised to 2 as in DeepSpeed.
  LrScheduleConfig one = mmr();
  one.warmup_num_steps = 1;
  EXPECT_DOUBLE_EQ(WarmupDecayLR(one).gamma(1), 0.5);
  // A non-zero minimum lr.
  LrScheduleConfig mn = mmr();
  mn.warmup_min_lr = 1e-5;
  EXPECT_DOUBLE_EQ(WarmupDecayLR(mn).lr_for_step(1), 1e-5);
}

TEST(TrainLrSchedule, InvalidFieldsAreNamed) {
  LrScheduleConfig c = mmr();
  c.warmup_type = "cosine";
  EXPECT_THROW(WarmupDecayLR{c}, Error);
  c = mmr();
  c.warmup_num_steps = 0;
  EXPECT_THROW(WarmupDecayLR{c}, Error);
  c = mmr();
  c.first_step = "max";
  try {
    WarmupDecayLR s(c);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("first_step"), std::string::npos);
  }
}

}  // namespace
}  // namespace m2sa::train
