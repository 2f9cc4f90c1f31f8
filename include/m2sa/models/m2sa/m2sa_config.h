#pragma once
// Configuration of the whole M2SA model: the SAM, CLIP vision tower and LLaMA sections (each with its own
// config struct) plus an "m2sa" section with what the composition adds (../shared/spec/M2SA.md sections 1.4-1.8).
//
// JSON layout (configs/tiny.json, configs/m2sa-7b.json, configs/m2sa-13b.json):
//   {"sam": {...SamConfig...}, "clip": {...ClipVisionConfig...}, "llama": {...LlamaConfig...},
//    "m2sa": {"out_dim": 256,               // text_hidden_fcs output = SAM prompt width (required)
//             "seg_token_id": 32000,         // [SEG]; the tokenizer must agree (optional fields from here on)
//             "im_start_token_id": 32001, "im_end_token_id": 32002,
//             "use_mm_start_end": true,      // prompts wrap <image> as <im_start><image><im_end>
//             "model_max_length": 2048,      // training truncation (spec 2.4)
//             "lora": {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": [...],
//                      "exclude_modules": [...]},
//             "attention": "sdpa"}}           // or "exact" (nn/attention.h), for bf16 parity runs
// Derived sizes are methods: the number of image tokens comes from the CLIP config (patches, +1 with
// select_feature "cls_patch"), mm_hidden_size is the CLIP width.
#include <cstdint>
#include <filesystem>
#include <string>

#include "m2sa/core/json_reader.h"
#include "m2sa/models/clip/clip_config.h"
#include "m2sa/models/llama/llama_config.h"
#include "m2sa/models/sam/sam_config.h"
#include "m2sa/nn/attention.h"
#include "m2sa/nn/lora.h"

namespace m2sa::m2sa_model {

// Token ids that mean something to the model (MMR:utils/utils.py; spec 1.6).
inline constexpr int64_t kImageTokenIndex = -200;  // IMAGE_TOKEN_INDEX: the placeholder the image features replace
inline constexpr int64_t kIgnoreIndex = -100;      // IGNORE_INDEX: unsupervised label

struct M2SASettings {
  int64_t out_dim = 256;
  int64_t seg_token_id = 32000;
  int64_t im_start_token_id = 32001;
  int64_t im_end_token_id = 32002;
  bool use_mm_start_end = true;
  int64_t model_max_length = 2048;
  nn::LoraConfig lora;
  // How every attention of the model computes (SAM, CLIP, LLaMA): fused SDPA, or the reference's arithmetic.
  nn::AttentionMode attention = nn::AttentionMode::kSdpa;

  json to_json() const;
};

struct M2SAConfig {
  sam::SamConfig sam;
  clip::ClipVisionConfig clip;
  llama::LlamaConfig llama;
  M2SASettings m2sa;

  // Image feature tokens spliced in place of the -200 placeholder (256 for ViT-L/14 at 224 px).
  int64_t num_image_tokens() const { return clip.num_feature_tokens(); }
  // Width of the CLIP features = mm_projector input (1024 for ViT-L/14).
  int64_t mm_hidden_size() const { return clip.hidden_size; }
  int64_t hidden_size() const { return llama.hidden_size; }
  int64_t vocab_size() const { return llama.vocab_size; }

  // Strict: unknown fields are errors; "sam", "clip", "llama" and "m2sa" (with out_dim) are required.
  static M2SAConfig from_json(const JsonReader& reader);
  json to_json() const;
  // Cross-section consistency: out_dim = SAM prompt width, token ids inside the vocabulary and distinct,
  // model_max_length within max_position_embeddings and longer than the image tokens. `where` prefixes messages.
  void validate(const std::string& where = "M2SAConfig") const;

  // M2SA-7B (LLaVA-Lightning-7B-v1-1 = LLaMA-1 7B) and M2SA-Llama2-13B: SAM ViT-H with the block-7 tap and
  // compress_vit, CLIP ViT-L/14 at 224 px (256 image tokens), vocab 32003.
  static M2SAConfig m2sa_7b();
  static M2SAConfig m2sa_13b();

  // A LLaVA / LISA / M2SA Hugging Face config.json (spec 1.7): LLaMA sizes (LlamaConfig::from_hf_config),
  // out_dim, mm_hidden_size (checked against `clip`), mm_vision_select_layer / mm_vision_select_feature (set on
  // `clip`), mm_use_im_start_end. SAM is ViT-H with M2SA's tap and compress_vit (the only SAM the reference
  // builds); the token ids keep their defaults (the tokenizer is checked against them). `clip` comes from the
  // CLIP folder's own config.json. `source` names the file in messages.
  static M2SAConfig from_hf_config(const json& config, const std::string& source, clip::ClipVisionConfig clip);
};

// Reads a model config file (layout above) strictly; errors name the file and the field.
M2SAConfig read_model_config(const std::filesystem::path& path);

}  // namespace m2sa::m2sa_model
