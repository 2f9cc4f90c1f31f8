// m2sa inspect PATH [--json]        tensors of a checkpoint file or folder
// m2sa inspect --config C [--json]  parameters the model built from a config expects (built shape-only)
#include <iostream>
#include <memory>

#include "command.h"
#include "m2sa/core/error.h"
#include "m2sa/core/json_reader.h"
#include "m2sa/io/weight_store.h"
#include "m2sa/models/model_inventory.h"

namespace m2sa::cli {
namespace {

int print(const std::vector<TensorInfo>& tensors, bool as_json) {
  if (as_json) {
    json out = {{"tensors", json::array()}};
    for (const auto& t : tensors)
      out["tensors"].push_back({{"name", t.name}, {"dtype", std::string(c10::toString(t.dtype))}, {"shape", t.shape}});
    std::cout << out.dump(1) << "\n";
    return 0;
  }
  int64_t total = 0;
  for (const auto& t : tensors) {
    std::cout << t.name << "  " << c10::toString(t.dtype) << "  " << shape_string(t.shape) << "\n";
    total += t.numel();
  }
  std::cout << tensors.size() << " tensors, " << total << " elements\n";
  return 0;
}

Registrar register_inspect({"inspect", "List the tensors of a checkpoint, or the parameters a config's model expects",
               [](CLI::App& app) {
                 auto path = std::make_shared<std::string>();
                 auto config = std::make_shared<std::string>();
                 auto as_json = std::make_shared<bool>(false);
                 app.add_option("path", *path, "checkpoint file (.safetensors, .pth, .bin) or HF folder");
                 app.add_option("--config", *config, "model config JSON: list its parameters without allocating them");
                 app.add_flag("--json", *as_json, "print {\"tensors\": [{name, dtype, shape}]}");
                 return [=]() -> int {
                   if (path->empty() == config->empty()) fail("inspect: give either a checkpoint PATH or --config");
                   if (!config->empty()) return print(model_inventory(*config), *as_json);
                   return print(WeightStore::open(*path).tensors(), *as_json);
                 };
               }});

}  // namespace
}  // namespace m2sa::cli
