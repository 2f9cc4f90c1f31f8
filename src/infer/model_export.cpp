#include "m2sa/infer/model_export.h"

#include <unistd.h>

#include <chrono>

#include "m2sa/core/atomic_file.h"
#include "m2sa/core/error.h"
#include "m2sa/core/json_reader.h"
#include "m2sa/infer/model_loading.h"
#include "m2sa/models/m2sa/m2sa_checkpoint.h"

namespace m2sa::infer {

namespace fs = std::filesystem;

json clip_preprocessor_config(const clip::ClipVisionConfig& c) {
  // transformers' CLIPImageProcessor for the openai towers, at this tower's image size.
  return json{{"crop_size", c.image_size},
              {"do_center_crop", true},
              {"do_normalize", true},
              {"do_resize", true},
              {"feature_extractor_type", "CLIPFeatureExtractor"},
              {"image_mean", {0.48145466, 0.4578275, 0.40821073}},
              {"image_std", {0.26862954, 0.26130258, 0.27577711}},
              {"resample", 3},
              {"size", c.image_size}};
}

void export_model(const m2sa_model::M2SAForCausalLMImpl& model, const Tokenizer& tokenizer, const fs::path& dir,
                  const ExportOptions& options) {
  const m2sa_model::M2SAConfig& config = model.config();
  check_tokenizer(tokenizer, config, "export: the tokenizer");
  M2SA_CHECK(!dir.empty(), "export: no output directory");
  if (fs::exists(dir)) {
    M2SA_CHECK(fs::is_directory(dir), dir.string(), ": exists and is not a directory");
    const bool empty = fs::is_empty(dir);
    M2SA_CHECK(empty || options.overwrite, dir.string(), ": exists and is not empty (pass --overwrite to replace a "
               "model directory)");
    M2SA_CHECK(empty || fs::exists(dir / m2sa_model::kHfConfigFile), dir.string(),
               ": exists and does not look like a model directory (no config.json); refusing to replace it");
  }
  const fs::path parent = dir.has_parent_path() ? dir.parent_path() : fs::path(".");
  fs::create_directories(parent);
  const auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
  const fs::path tmp = parent / ("." + dir.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" +
                                 std::to_string(stamp));
  fs::create_directories(tmp);
  try {
    m2sa_model::write_safetensors_shards(tmp, m2sa_model::merged_hf_state(model), options.dtype, options.max_shard_bytes);
    write_json_file(tmp / m2sa_model::kHfConfigFile,
                    m2sa_model::hf_config_json(config, options.dtype, options.vision_tower_name));
    write_json_file(tmp / m2sa_model::kM2SAConfigFile, config.to_json());
    tokenizer.save(tmp);
    if (options.include_vision_tower) {
      const fs::path vt = tmp / m2sa_model::kVisionTowerDir;
      fs::create_directories(vt);
      m2sa_model::write_safetensors_shards(vt, m2sa_model::clip_state(model), options.dtype, options.max_shard_bytes);
      write_json_file(vt / m2sa_model::kHfConfigFile, m2sa_model::clip_hf_config_json(config.clip, options.dtype));
      write_json_file(vt / "preprocessor_config.json", clip_preprocessor_config(config.clip));
    }
    replace_directory(tmp, dir);
  } catch (const std::exception& e) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw Error("export to " + dir.string() + ": " + e.what());
  }
}

}  // namespace m2sa::infer
