#include "m2sa/models/model_inventory.h"

#include "m2sa/core/error.h"
#include "m2sa/core/json_reader.h"
#include "m2sa/io/module_weights.h"
#include "m2sa/nn/init.h"

namespace m2sa {

std::vector<TensorInfo> model_inventory(const std::filesystem::path& config_file) {
  const json j = read_json_file(config_file);
  JsonReader reader(j, config_file.string());
  nn::ShapeOnlyScope shape_only;
  std::vector<TensorInfo> out;
  // Filled in as the model families land (SAM, CLIP, LLaMA, M2SA).
  fail(config_file.string(), ": no model family in this build can be built from this config");
  return out;
}

}  // namespace m2sa
