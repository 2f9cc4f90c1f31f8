#include "m2sa/models/model_inventory.h"

#include "m2sa/core/error.h"
#include "m2sa/core/json_reader.h"
#include "m2sa/io/module_weights.h"
#include "m2sa/models/clip/clip_vision.h"
#include "m2sa/models/llama/llama_model.h"
#include "m2sa/models/m2sa/m2sa_model.h"
#include "m2sa/models/sam/builders.h"
#include "m2sa/nn/init.h"

namespace m2sa {

namespace {

std::vector<TensorInfo> infos(const torch::nn::Module& module) {
  std::vector<TensorInfo> out;
  for (const auto& [name, t] : module_state(module)) out.push_back(TensorInfo{name, t.scalar_type(), t.sizes().vec()});
  return out;
}

}  // namespace

std::vector<TensorInfo> model_inventory(const std::filesystem::path& config_file) {
  const json j = read_json_file(config_file);
  JsonReader reader(j, config_file.string());
  nn::ShapeOnlyScope shape_only;
  // A full M2SA config ("sam", "clip", "llama", "m2sa"), or a config with a single model family's section.
  if (reader.has("m2sa")) {
    const m2sa_model::M2SAConfig config = m2sa_model::M2SAConfig::from_json(reader);
    m2sa_model::M2SAForCausalLM model(config);
    return infos(*model);
  }
  const bool sam = reader.has("sam"), clip = reader.has("clip"), llama = reader.has("llama");
  if (sam + clip + llama == 1 && j.size() == 1) {
    if (sam) return infos(*sam::build_sam(sam::SamConfig::from_json(reader.child("sam"))));
    if (clip) return infos(*clip::ClipVisionModel(clip::ClipVisionConfig::from_json(reader.child("clip"))));
    return infos(*llama::LlamaForCausalLM(llama::LlamaConfig::from_json(reader.child("llama"))));
  }
  fail(config_file.string(), ": not a model config: expected the sections \"sam\", \"clip\", \"llama\" and \"m2sa\" "
       "(an M2SA model, like configs/m2sa-7b.json), or exactly one of \"sam\", \"clip\", \"llama\"");
}

}  // namespace m2sa
