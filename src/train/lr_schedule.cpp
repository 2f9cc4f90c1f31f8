#include "m2sa/train/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "m2sa/core/error.h"

namespace m2sa::train {

WarmupDecayLR::WarmupDecayLR(LrScheduleConfig config) : config_(std::move(config)) {
  M2SA_CHECK(config_.warmup_num_steps > 0, "lr schedule: warmup_num_steps must be a positive integer, got ",
             config_.warmup_num_steps);
  M2SA_CHECK(config_.total_num_steps > 0, "lr schedule: total_num_steps must be positive, got ",
             config_.total_num_steps);
  M2SA_CHECK(config_.warmup_max_lr >= 0 && config_.warmup_min_lr >= 0,
             "lr schedule: learning rates must be >= 0, got warmup_min_lr ", config_.warmup_min_lr,
             " and warmup_max_lr ", config_.warmup_max_lr);
  M2SA_CHECK(config_.warmup_type == "linear" || config_.warmup_type == "log",
             "lr schedule: warmup_type must be \"linear\" or \"log\", got \"", config_.warmup_type, "\"");
  M2SA_CHECK(config_.first_step == "deepspeed-0.14" || config_.first_step == "deepspeed-0.15.3",
             "lr schedule: first_step must be \"deepspeed-0.14\" (first step at the max lr, as DeepSpeed 0.14.0) "
             "or \"deepspeed-0.15.3\" (first step at warmup_min_lr), got \"",
             config_.first_step, "\"");
  warmup_ = std::max<int64_t>(2, config_.warmup_num_steps);
  inverse_log_warmup_ = 1.0 / std::log(static_cast<double>(warmup_));
  log_warmup_ = config_.warmup_type == "log";
  first_step_max_lr_ = config_.first_step == "deepspeed-0.14";
}

double WarmupDecayLR::gamma(int64_t i) const {
  if (i < warmup_) {
    if (log_warmup_) return inverse_log_warmup_ * std::log(static_cast<double>(i + 1));
    return static_cast<double>(i) / static_cast<double>(warmup_);
  }
  return std::max(0.0, static_cast<double>(config_.total_num_steps - i) /
                           std::max(1.0, static_cast<double>(config_.total_num_steps - warmup_)));
}

double WarmupDecayLR::lr_for_step(int64_t steps_done) const {
  M2SA_CHECK(steps_done >= 0, "lr schedule: negative step ", steps_done);
  const int64_t iteration = steps_done - 1;  // DeepSpeed's last_batch_iteration when that step runs
  if (iteration < 0) return first_step_max_lr_ ? config_.warmup_max_lr : config_.warmup_min_lr;
  const double delta = config_.warmup_max_lr - config_.warmup_min_lr;
  return config_.warmup_min_lr + delta * gamma(iteration);
}

json WarmupDecayLR::to_json() const {
  return json{{"type", "WarmupDecayLR"},
              {"warmup_min_lr", config_.warmup_min_lr},
              {"warmup_max_lr", config_.warmup_max_lr},
              {"warmup_num_steps", config_.warmup_num_steps},
              {"total_num_steps", config_.total_num_steps},
              {"warmup_type", config_.warmup_type},
              {"first_step", config_.first_step}};
}

}  // namespace m2sa::train
