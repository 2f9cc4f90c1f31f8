#pragma once
// The parameters (name, dtype, shape) that the model described by a config file expects, computed by building
// the model shape-only (no weights allocated), so the 7B/13B layouts can be checked on any machine.
#include <filesystem>
#include <vector>

#include "m2sa/io/tensor_info.h"

namespace m2sa {

std::vector<TensorInfo> model_inventory(const std::filesystem::path& config_file);

}  // namespace m2sa
