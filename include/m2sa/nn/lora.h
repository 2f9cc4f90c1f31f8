#pragma once
// Which linear layers get a LoRA adapter, and the checkpoint layouts of a model with adapters
// (../shared/spec/M2SA.md section 1.8 and 1.9). The adapter itself lives in nn::Linear (nn/layers.h).
//
// Reference: LISA/MMR `train_ds.py::find_linear_layers` picks every nn.Linear whose module name contains one of
// the targets (`q_proj`, `v_proj`) and none of the exclusions (`visual_model`, `vision_tower`, `mm_projector`,
// `text_hidden_fcs`), then PEFT 0.4 wraps them (r 8, alpha 16, dropout 0.05, scaling alpha / r = 2).
#include <torch/nn/module.h>

#include <string>
#include <vector>

#include "m2sa/core/json_reader.h"
#include "m2sa/io/safetensors.h"

namespace m2sa::nn {

struct LoraConfig {
  int64_t r = 8;
  double alpha = 16.0;
  double dropout = 0.05;
  std::vector<std::string> target_modules{"q_proj", "v_proj"};
  std::vector<std::string> exclude{"visual_model", "vision_tower", "mm_projector", "text_hidden_fcs"};

  // JSON fields as PEFT names them: r, lora_alpha, lora_dropout, target_modules, plus exclude_modules (LISA's
  // exclusion list). Strict: unknown fields are errors; every field is optional (defaults above).
  static LoraConfig from_json(const JsonReader& reader);
  json to_json() const;
  void validate(const std::string& where = "LoraConfig") const;
};

// True if `module_name` contains one of the targets and none of the exclusions (plain substring tests, as LISA).
bool lora_name_matches(const std::string& module_name, const LoraConfig& config);

// Enables LoRA on every nn::Linear under `root` whose dotted name matches. Returns the names, in module order.
// Errors if nothing matches (as PEFT does) or a matching layer already has an adapter.
std::vector<std::string> apply_lora(torch::nn::Module& root, const LoraConfig& config);

// The nn::Linear layers under `root` that carry an adapter, by dotted name.
std::vector<std::string> lora_layer_names(const torch::nn::Module& root);

// Merges / unmerges every adapter under `root` that is not merged / is merged; returns the names touched.
std::vector<std::string> merge_all_lora(torch::nn::Module& root);
std::vector<std::string> unmerge_all_lora(torch::nn::Module& root);

// PEFT's mark_only_lora_as_trainable (bias="none"): requires_grad = true exactly for the lora_A / lora_B
// parameters. Returns how many parameters are trainable afterwards.
int64_t mark_only_lora_trainable(torch::nn::Module& root);

// True for a state key of an adapter parameter (`....lora_A.default.weight`, `....lora_B.default.weight`).
bool is_lora_key(const std::string& key);

// The three states below are name -> tensor lists like a state_dict; unchanged tensors alias the live parameters.
// Only the adapter parameters (`<linear>.lora_A.default.weight`, ...), module-relative names.
NamedTensors lora_state(const torch::nn::Module& root);
// The whole state under PEFT's `base_model.model.` prefix with the adapters un-merged, i.e. the layout of the
// reference's training output (zero_to_fp32 of a PeftModel). Loads back through key_rules::peft_m2sa().
// A merged adapter is taken out of its base weight on the fly (W - (alpha / r) B A); the module is not changed.
NamedTensors peft_state(const torch::nn::Module& root);
// The merged layout (what the reference merge script saves): adapters folded into their base weights
// (W + (alpha / r) B A unless already merged), no lora_* keys, no prefix. The module itself is not changed.
NamedTensors merged_state(const torch::nn::Module& root);

}  // namespace m2sa::nn
