#pragma once
// Configuration of the CLIP vision tower (Hugging Face CLIPVisionConfig field names) plus LLaVA's feature
// selection (mm_vision_select_layer / mm_vision_select_feature, ../shared/spec/M2SA.md section 1.6).
#include <cstdint>
#include <string>

#include "m2sa/core/json_reader.h"

namespace m2sa::clip {

struct ClipVisionConfig {
  int64_t hidden_size = 1024;
  int64_t intermediate_size = 4096;
  int64_t num_hidden_layers = 24;
  int64_t num_attention_heads = 16;
  int64_t image_size = 224;
  int64_t patch_size = 14;
  double layer_norm_eps = 1e-5;
  std::string hidden_act = "quick_gelu";  // the only activation supported (all OpenAI CLIP towers use it)
  // LLaVA: hidden_states[select_layer] (Python indexing over the num_hidden_layers + 1 states; -2 = output of the
  // second-to-last encoder layer, before post_layernorm).
  int64_t select_layer = -2;
  // "patch": drop the CLS token (LLaVA's default); "cls_patch": keep it.
  std::string select_feature = "patch";

  // openai/clip-vit-large-patch14 (224 px, 256 patches) and openai/clip-vit-large-patch14-336 (576 patches).
  static ClipVisionConfig vit_l14_224();
  static ClipVisionConfig vit_l14_336();

  // Strict: hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, image_size, patch_size are
  // required; layer_norm_eps, hidden_act, select_layer, select_feature optional (defaults above); unknown fields
  // are errors.
  static ClipVisionConfig from_json(const JsonReader& reader);
  // A Hugging Face config.json of a CLIPVisionModel, or of a full CLIPModel (its `vision_config` is used).
  // Missing fields take HF's CLIPVisionConfig defaults (hidden 768, 12 layers, 12 heads, patch 32, ...), as
  // from_pretrained does; unrelated HF fields are ignored. select_layer / select_feature keep their defaults
  // (they live in the LLaVA config, not in CLIP's). `source` names the file in messages.
  static ClipVisionConfig from_hf_config(const json& config, const std::string& source);
  json to_json() const;

  // Throws m2sa::Error naming `where` and the field if a value is impossible or unsupported.
  void validate(const std::string& where = "ClipVisionConfig") const;

  int64_t head_dim() const { return hidden_size / num_attention_heads; }
  int64_t grid_size() const { return image_size / patch_size; }
  int64_t num_patches() const { return grid_size() * grid_size(); }
  int64_t num_positions() const { return num_patches() + 1; }  // CLS first
  // select_layer as an index into hidden_states, in [0, num_hidden_layers].
  int64_t select_layer_index() const;
  // Tokens per image in image_features(): num_patches (+1 with "cls_patch").
  int64_t num_feature_tokens() const { return num_patches() + (select_feature == "cls_patch" ? 1 : 0); }
};

}  // namespace m2sa::clip
