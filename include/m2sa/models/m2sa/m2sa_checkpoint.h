#pragma once
// Loading M2SA weights from every checkpoint kind the reference produces or consumes
// (../shared/spec/M2SA.md section 1.9; key rules in m2sa/io/checkpoint_keys.h), and the merged Hugging Face layout
// our exporter writes. Errors name the checkpoint (file or folder) and every missing / unexpected / mis-shaped key;
// a failed load leaves the model untouched.
//
//  (a) merged HF folder (released M2SA / LISA weights, `m2sa export` output): load_merged_weights + load_clip_weights
//      (the merge script drops the CLIP tower; it comes from its own folder, e.g. openai/clip-vit-large-patch14);
//  (b) un-merged PEFT training output (`base_model.model.` prefix, lora_A/B.default; includes the CLIP tower):
//      load_peft_weights adds the config's LoRA adapters, loads, and merges them (W += alpha/r B A);
//  (c) the start of a training run: SAM .pth + LLaVA folder + CLIP folder (load_training_start).
// A model directory holds config.json (HF, llava-style), optionally m2sa_config.json (ours: the exact sizes),
// weights (shards + index), tokenizer files and optionally vision_tower/ (an HF CLIP folder) so that it is
// self-contained (model_dir_config / find_clip_dir).
#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "m2sa/core/json_reader.h"
#include "m2sa/io/module_weights.h"
#include "m2sa/io/weight_store.h"
#include "m2sa/models/m2sa/m2sa_model.h"

namespace m2sa::m2sa_model {

inline constexpr const char* kM2SAConfigFile = "m2sa_config.json";
inline constexpr const char* kHfConfigFile = "config.json";
inline constexpr const char* kVisionTowerDir = "vision_tower";  // our exports: the CLIP folder inside the model dir

// (a) Every tensor but the CLIP tower (key_rules::hf_m2sa: rotary_emb.inv_freq and vision-tower keys ignored).
LoadReport load_merged_weights(M2SAForCausalLMImpl& model, const WeightStore& store);
// An HF CLIP folder (CLIPVisionModel or CLIPModel) into model.vision_tower.vision_tower.*.
LoadReport load_clip_weights(M2SAForCausalLMImpl& model, const WeightStore& store);

// (b) The PEFT state dict. Adds LoRA (config.m2sa.lora) if the model has no adapters, loads every tensor strictly,
// then merges the adapters into q_proj / v_proj. With includes_vision_tower = false the file's CLIP keys (if any)
// are ignored and the tower must be loaded with load_clip_weights.
LoadReport load_peft_weights(M2SAForCausalLMImpl& model, const WeightStore& store, bool includes_vision_tower = true);

// (c) Training start. SAM (key_rules::sam_into_m2sa; compress_vit may be missing and keeps its init), the LLaVA
// folder's LLaMA + mm_projector (embed_tokens / lm_head with fewer rows than vocab_size are copied into the first
// rows, the new rows drawn from N(0, 0.02) like HF's resize_token_embeddings), and the CLIP folder.
struct TrainingStartReport {
  LoadReport sam, llava, clip;
  int64_t vocab_rows_loaded = 0;  // rows of embed_tokens / lm_head found in the LLaVA checkpoint
  int64_t vocab_rows_added = 0;   // rows initialised here (3 for a LLaMA vocabulary + [SEG], <im_start>, <im_end>)
};
TrainingStartReport load_training_start(M2SAForCausalLMImpl& model, const WeightStore& sam, const WeightStore& llava,
                                        const WeightStore& clip);

// What no start checkpoint holds: text_hidden_fcs and (M2SA) mask_decoder.compress_vit, drawn as the model's own
// constructors draw them (fp32, the global generator) and copied into the model's tensors in their dtype. With
// allocate_shape_only + load_training_start this builds the training start in the target dtype directly (no fp32 copy
// of the 7B model). Returns the state names initialised.
std::vector<std::string> init_parts_not_in_start_checkpoints(M2SAForCausalLMImpl& model);

// Trained weights over a built model (the trainer's trainable.safetensors, state names, LoRA keys included):
// every tensor of the file must be a model tensor of the same shape; the others keep their values.
LoadReport load_trainable_weights(M2SAForCausalLMImpl& model, const WeightStore& store);

// Gives every meta (shape-only) parameter and buffer under `module` uninitialised storage in `dtype` on `device`
// (LoRA adapter tensors in fp32, as PEFT creates them), keeping the module's tensor handles. Lets a 7B/13B model be
// loaded straight into bf16 without an fp32 copy; the caller must then load every tensor (the strict loads above).
void allocate_shape_only(torch::nn::Module& module, at::ScalarType dtype, const c10::Device& device);

// ---- the merged HF layout ----

// The state in the merged layout (LoRA folded into its base weights, no lora_* keys), named like
// m2sa_{7b,13b}_keys.json; with include_vision_tower the CLIP tower too (model.vision_tower.vision_tower.*).
NamedTensors merged_hf_state(const M2SAForCausalLMImpl& model, bool include_vision_tower = false);
// The CLIP tower under HF CLIPVisionModel names (vision_model.*).
NamedTensors clip_state(const M2SAForCausalLMImpl& model);

// config.json in the llava style of LISA-family checkpoints (spec 1.7: train_mask_decoder, out_dim, use_cache false,
// mm_use_im_start_end, mm_vision_select_layer / _feature, mm_hidden_size, vision_tower, image_aspect_ratio, ...),
// with the LLaMA sizes, so that the reference code (and M2SAConfig::from_hf_config) can rebuild the model.
json hf_config_json(const M2SAConfig& config, at::ScalarType dtype, const std::string& vision_tower_name);
// config.json of an HF CLIPVisionModel folder.
json clip_hf_config_json(const clip::ClipVisionConfig& config, at::ScalarType dtype);

// Writes tensors (floating ones cast to `dtype`) as `model-0000k-of-0000n.safetensors` shards of at most
// max_shard_bytes (a larger tensor gets its own shard) plus `model.safetensors.index.json`
// ({"metadata": {"total_size"}, "weight_map"}), into the existing directory `dir`. Each file is written atomically.
// safetensors metadata {"format": "pt"} as transformers requires. Returns the file names written.
std::vector<std::string> write_safetensors_shards(const std::filesystem::path& dir, const NamedTensors& tensors,
                                                  at::ScalarType dtype, int64_t max_shard_bytes);

// The config of a model directory: m2sa_config.json when present, else config.json (HF) + the CLIP folder's
// config.json (ClipVisionConfig::from_hf_config) + SAM ViT-H with M2SA's tap (M2SAConfig::from_hf_config).
M2SAConfig model_dir_config(const std::filesystem::path& dir, const std::filesystem::path& clip_dir);
// The CLIP folder to use: `explicit_dir` when given (it must exist), else `<dir>/vision_tower` when it holds a
// config.json (our exports), else an empty path (the caller reports that a CLIP folder is needed).
std::filesystem::path find_clip_dir(const std::filesystem::path& dir, const std::filesystem::path& explicit_dir);

}  // namespace m2sa::m2sa_model
