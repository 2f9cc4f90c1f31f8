#pragma once
// The prefix rules between checkpoint keys and m2sa module keys (../shared/spec/M2SA.md section 1.9), all in
// one place. Modules are named like the reference state_dicts, so the rules are only prefixes and a short
// list of documented optional keys to ignore.
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace m2sa {

struct KeyRules {
  std::string name;  // for messages: "SAM .pth", "HF CLIP vision folder", ...
  // Checkpoint prefix -> module prefix, first match wins ("" matches every key).
  std::vector<std::pair<std::string, std::string>> rename;
  // Checkpoint keys containing one of these are ignored (documented optional keys, parts not used).
  std::vector<std::string> ignore;
  // Keys that match no rename rule are ignored instead of reported as unexpected (loading a part of a
  // larger checkpoint).
  bool ignore_unmatched = false;

  // The module key for a checkpoint key, or nullopt if the key is ignored. Keys that match no rule map to
  // themselves (and are then "unexpected" if the module has no such parameter).
  std::optional<std::string> apply(const std::string& checkpoint_key) const;
};

namespace key_rules {
// Module prefixes of the M2SA composition (mirroring M2SAForCausalLM).
inline constexpr const char* kSam = "model.visual_model.";
inline constexpr const char* kClip = "model.vision_tower.vision_tower.";
inline constexpr const char* kPeft = "base_model.model.";

KeyRules identity(std::string name);
// SAM `sam_vit_*.pth` (keys `image_encoder.*`, `prompt_encoder.*`, `mask_decoder.*`) into M2SA.
KeyRules sam_into_m2sa();
// HF CLIP folder (`vision_model.*`; text tower, projections and position_ids ignored) into M2SA, or into a
// standalone CLIPVisionModel (`into_m2sa = false`).
KeyRules clip_vision(bool into_m2sa);
// Merged HF M2SA / LISA / LLaVA folder into M2SA: identity, without `rotary_emb.inv_freq` and without the
// vision tower (never stored in merged checkpoints; loaded from its own folder).
KeyRules hf_m2sa();
// Un-merged PEFT training output (`base_model.model.` prefix, `lora_A/B.default`) into M2SA.
KeyRules peft_m2sa();
// The LLaMA part (`model.embed_tokens`, `model.layers.*`, `model.norm`, `lm_head`) of any of the above into a
// standalone LlamaForCausalLM.
KeyRules llama_part();
}  // namespace key_rules

}  // namespace m2sa
