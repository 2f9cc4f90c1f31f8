#pragma once
// Conversation templates of the vendored LLaVA (MMR:model/llava/conversation.py, identical to LISA's):
// `llava_v1` (the default of train_ds.py and chat.py; ../shared/spec/M2SA.md section 2.2) and
// `llava_llama_2` (selectable in the reference, but its target masking is broken there: spec trap 11).
#include <string>

#include "m2sa/text/dialog.h"

namespace m2sa {

enum class ConvTemplate { kLlavaV1, kLlavaLlama2 };

// "llava_v1" or "llava_llama_2"; anything else is an error naming the accepted values.
ConvTemplate conv_template_from_name(const std::string& name);
std::string conv_template_name(ConvTemplate t);

// The llava_v1 system prompt and separators.
inline constexpr const char* kLlavaV1System =
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions.";
inline constexpr const char* kLlavaV1AssistantSep = " ASSISTANT: ";  // collate_fn's `sep`
inline constexpr const char* kLlavaV1RoundSep = "</s>";              // conv.sep2

// collate_fn with use_mm_start_end: every "<image>" becomes "<im_start><image><im_end>".
std::string wrap_image_tokens(const std::string& text);

// Conversation.get_prompt() for the dialog: each Turn appends (USER, user) and (ASSISTANT, assistant);
// an empty message renders as "ROLE:" (llava_v1: an empty last answer gives the generation prompt
// "... ASSISTANT:"). With `use_mm_start_end`, "<image>" is then wrapped as collate_fn / chat.py do.
//   llava_v1:  "<system> USER: <q1> ASSISTANT: <a1></s>USER: <q2> ASSISTANT: <a2></s>"
std::string render_conversation(const Dialog& dialog, ConvTemplate t = ConvTemplate::kLlavaV1,
                                bool use_mm_start_end = true);

// chat.py's prompt for one question: "<image>\n" + question with an empty answer, rendered and wrapped.
std::string render_generation_prompt(const std::string& question, ConvTemplate t = ConvTemplate::kLlavaV1,
                                     bool use_mm_start_end = true);

}  // namespace m2sa
