// Fuzz target: a model config JSON (configs/tiny.json, m2sa-7b.json: SAM, CLIP, LLaMA and M2SA sections, strict)
// through read_model_config.
#include "fuzz_target.h"
#include "m2sa/models/m2sa/m2sa_config.h"

M2SA_FUZZ_TARGET(model_config) {
  const auto path = m2sa::fuzz::write_temp("model_config.json", data, size);
  return m2sa::fuzz::swallow_error([&] { (void)m2sa::m2sa_model::read_model_config(path); });
}
