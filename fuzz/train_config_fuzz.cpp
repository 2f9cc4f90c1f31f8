// Fuzz target: a training config JSON (configs/train/*.json: model, init, data mix, trainer, losses, validation,
// strict) through TrainingRunConfig::read. Relative paths resolve against the temp folder, where nothing exists.
#include "fuzz_target.h"
#include "m2sa/train/m2sa_training.h"

M2SA_FUZZ_TARGET(train_config) {
  const auto path = m2sa::fuzz::write_temp("train_config/train.json", data, size);
  return m2sa::fuzz::swallow_error([&] { (void)m2sa::train::TrainingRunConfig::read(path); });
}
