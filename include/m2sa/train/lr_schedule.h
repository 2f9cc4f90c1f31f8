#pragma once
// DeepSpeed's WarmupDecayLR (deepspeed/runtime/lr_schedules.py, DeepSpeed 0.14.0 as pinned by MMR:M2SA.yaml),
// configured as MMR:train_ds.py:315-323 does: warmup_min_lr 0, warmup_max_lr = lr, warmup_num_steps 100,
// warmup_type "linear" (the MMR config sets it explicitly; DeepSpeed's own default would be "log"),
// total_num_steps = epochs * steps_per_epoch.
//
// DeepSpeed's scheduler holds `last_batch_iteration` (starting at -1) and is stepped *after* each optimizer
// step, so optimizer step k (1-based) runs with the learning rate of iteration k-2:
//   gamma(i) = i / warmup                       for i < warmup   ("linear"; "log": log(i+1) / log(warmup))
//            = max(0, (total - i) / max(1, total - warmup))   afterwards
//   lr(i)    = min_lr + (max_lr - min_lr) * gamma(i)
// warmup is max(2, warmup_num_steps) as in DeepSpeed. The very first optimizer step (iteration -1) is a
// DeepSpeed version quirk: 0.14.0 never initialises the optimizer's lr, so step 1 runs with the optimizer's
// configured lr (= warmup_max_lr); from 0.15.3 (PR #6597) the scheduler sets warmup_min_lr before step 1.
// `first_step` picks one of the two. The default is "deepspeed-0.15.3": the warmup starts at warmup_min_lr (0), as
// the spec describes the schedule (0 -> lr over warmup_num_steps); "deepspeed-0.14" reproduces the reference
// environment's quirk (a first step at the full lr, then the warmup from 0).
#include <cstdint>
#include <string>

#include "m2sa/core/json_reader.h"

namespace m2sa::train {

struct LrScheduleConfig {
  double warmup_min_lr = 0.0;
  double warmup_max_lr = 3e-4;     // the optimizer's lr
  int64_t warmup_num_steps = 100;
  int64_t total_num_steps = 5000;
  std::string warmup_type = "linear";          // "linear" | "log"
  std::string first_step = "deepspeed-0.15.3";  // "deepspeed-0.15.3" (min lr) | "deepspeed-0.14" (max lr)
};

class WarmupDecayLR {
 public:
  explicit WarmupDecayLR(LrScheduleConfig config);  // validates the fields, errors name them

  // The learning rate of the optimizer step that follows `steps_done` completed optimizer steps (0-based:
  // lr_for_step(0) is the lr of the first step).
  double lr_for_step(int64_t steps_done) const;
  // DeepSpeed's _get_gamma() at last_batch_iteration = iteration (>= 0).
  double gamma(int64_t iteration) const;

  const LrScheduleConfig& config() const { return config_; }
  json to_json() const;

 private:
  LrScheduleConfig config_;
  int64_t warmup_;  // max(2, warmup_num_steps)
  double inverse_log_warmup_;
  bool log_warmup_;
  bool first_step_max_lr_;
};

}  // namespace m2sa::train
