#pragma once
// Which parameters of M2SA are trained (../shared/spec/M2SA.md section 1.8; MMR:train_ds.py:192-243):
// get_peft_model freezes everything and adds LoRA to q_proj / v_proj of the LLM (the config's lora rule, which
// excludes visual_model, vision_tower, mm_projector, text_hidden_fcs), then every parameter whose name contains
// lm_head, embed_tokens, mask_decoder (compress_vit included) or text_hidden_fcs is unfrozen. Everything else
// (CLIP, mm_projector, SAM image and prompt encoders, the LLaMA weights) stays frozen.
// The "full" mode trains every parameter (a tiny model trained from scratch; no LoRA is added).
#include <cstdint>
#include <string>
#include <vector>

#include "m2sa/models/m2sa/m2sa_model.h"

namespace m2sa::m2sa_model {

enum class TrainMode {
  kLora,  // the reference's selection (above)
  kFull,  // every parameter
};

// "lora" or "full"; anything else is an error naming the accepted values.
TrainMode train_mode_from_name(const std::string& name);
std::string train_mode_name(TrainMode mode);

// Substrings of the parameter names unfrozen next to LoRA in kLora mode (the reference's list).
const std::vector<std::string>& lora_mode_trainable_modules();

// Applies the selection: in kLora mode adds the config's LoRA adapters when the model has none yet, then sets
// requires_grad on exactly the selected parameters (and clears it on the others). Returns the names of the
// trainable parameters in state order. Works on shape-only (meta) models.
std::vector<std::string> set_trainable(M2SAForCausalLMImpl& model, TrainMode mode);

// Names of the parameters with requires_grad, in state order, and their element count.
std::vector<std::string> trainable_names(const M2SAForCausalLMImpl& model);
int64_t trainable_numel(const M2SAForCausalLMImpl& model);

}  // namespace m2sa::m2sa_model
