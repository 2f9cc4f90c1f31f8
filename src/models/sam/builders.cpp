#include "m2sa/models/sam/builders.h"

#include "m2sa/core/error.h"
#include "m2sa/core/json_reader.h"

namespace m2sa::sam {

SamConfig read_sam_config(const std::filesystem::path& path) {
  const json j = read_json_file(path);
  return SamConfig::from_json(JsonReader(j, path.string()));
}

Sam build_sam(const SamConfig& config) { return Sam(config); }
Sam build_sam_vit_b() { return Sam(SamConfig::vit_b()); }
Sam build_sam_vit_l() { return Sam(SamConfig::vit_l()); }
Sam build_sam_vit_h() { return Sam(SamConfig::vit_h()); }

LoadReport load_sam_checkpoint(SamImpl& sam, const WeightStore& store, bool allow_missing_compress_vit) {
  LoadOptions options;
  options.rules = key_rules::identity("SAM checkpoint");
  if (allow_missing_compress_vit) options.allow_missing = {"mask_decoder.compress_vit."};
  // The error of a failed load names the file and every missing / unexpected / mis-shaped key.
  return load_weights(sam, store, options);
}

}  // namespace m2sa::sam
