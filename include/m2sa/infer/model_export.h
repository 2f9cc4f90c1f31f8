#pragma once
// `m2sa export`: a model directory in the merged Hugging Face layout of the reference merge script
// (../shared/spec/M2SA.md section 1.9a), so that the reference Python code can load it:
//   model-0000k-of-0000n.safetensors + model.safetensors.index.json   (LoRA merged; no CLIP tower)
//   config.json          llava-style HF config with LISA's fields (train_mask_decoder, out_dim, ...)
//   m2sa_config.json     our exact model config (sizes of every part), read first by load_model
//   tokenizer.model, added_tokens.json, special_tokens_map.json, tokenizer_config.json
//   vision_tower/        the CLIP tower as an HF CLIPVisionModel folder (optional), so the directory is complete
// The directory is written into a temporary sibling and renamed into place (never half-written).
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "m2sa/core/json_reader.h"
#include "m2sa/models/m2sa/m2sa_model.h"
#include "m2sa/text/tokenizer.h"

namespace m2sa::infer {

struct ExportOptions {
  c10::ScalarType dtype = c10::kBFloat16;                  // the reference merge script saves bf16
  int64_t max_shard_bytes = int64_t{10} * 1000 * 1000 * 1000;  // transformers 4.31 save_pretrained: "10GB"
  bool include_vision_tower = true;
  std::string vision_tower_name = "openai/clip-vit-large-patch14";  // config.json's vision_tower / mm_vision_tower
  bool overwrite = false;  // replace an existing model directory (one holding config.json)
};

// preprocessor_config.json of an HF CLIP folder: transformers' CLIPImageProcessor for the openai towers.
json clip_preprocessor_config(const clip::ClipVisionConfig& config);

// Writes `model` (+ tokenizer) to `dir`. Refuses a tokenizer that does not fit the model and an existing
// non-empty `dir` unless overwrite is set and it is a model directory.
void export_model(const m2sa_model::M2SAForCausalLMImpl& model, const Tokenizer& tokenizer,
                  const std::filesystem::path& dir, const ExportOptions& options = {});

}  // namespace m2sa::infer
