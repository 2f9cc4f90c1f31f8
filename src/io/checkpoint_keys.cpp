#include "m2sa/io/checkpoint_keys.h"

#include "m2sa/core/strings.h"

namespace m2sa {

std::optional<std::string> KeyRules::apply(const std::string& key) const {
  for (const auto& pattern : ignore)
    if (key.find(pattern) != std::string::npos) return std::nullopt;
  for (const auto& [from, to] : rename)
    if (starts_with(key, from)) return to + key.substr(from.size());
  if (ignore_unmatched) return std::nullopt;
  return key;
}

namespace key_rules {

// Buffers that some transformers versions store but that are derived, not learned.
static const char* kRotary = "rotary_emb.inv_freq";

KeyRules identity(std::string name) { return KeyRules{std::move(name), {}, {}, false}; }

KeyRules sam_into_m2sa() { return KeyRules{"SAM checkpoint", {{"", kSam}}, {}, false}; }

KeyRules clip_vision(bool into_m2sa) {
  KeyRules r{"CLIP vision checkpoint", {}, {"visual_projection.", "text_model.", "text_projection.", "logit_scale",
                                             "embeddings.position_ids"}, false};
  if (into_m2sa) {
    r.rename = {{"vision_model.", std::string(kClip) + "vision_model."}};
    r.ignore_unmatched = true;
  }
  return r;
}

KeyRules hf_m2sa() { return KeyRules{"merged HF checkpoint", {}, {kRotary, kClip}, false}; }

KeyRules peft_m2sa() {
  KeyRules r{"PEFT checkpoint", {{kPeft, ""}}, {kRotary}, false};
  return r;
}

KeyRules llama_part() {
  KeyRules r{"LLaMA weights", {}, {kRotary}, true};
  for (const char* p : {"model.embed_tokens.", "model.layers.", "model.norm.", "lm_head."}) r.rename.push_back({p, p});
  return r;
}

}  // namespace key_rules
}  // namespace m2sa
