#include "m2sa/text/conversation.h"

#include "m2sa/core/error.h"
#include "m2sa/core/strings.h"

namespace m2sa {

namespace {

constexpr const char* kLlavaLlama2System =
    "You are a helpful language and vision assistant. "
    "You are able to understand the visual content that the user provides, "
    "and assist the user with a variety of tasks using natural language.";

// SeparatorStyle.TWO (conversation.py get_prompt).
std::string render_two(const Dialog& dialog) {
  const std::string seps[2] = {" ", kLlavaV1RoundSep};
  const char* roles[2] = {"USER", "ASSISTANT"};
  std::string ret = std::string(kLlavaV1System) + seps[0];
  for (const auto& turn : dialog) {
    const std::string* messages[2] = {&turn.user, &turn.assistant};
    for (int i = 0; i < 2; ++i) {
      if (!messages[i]->empty()) ret += std::string(roles[i]) + ": " + *messages[i] + seps[i];
      else ret += std::string(roles[i]) + ":";
    }
  }
  return ret;
}

// SeparatorStyle.LLAMA_2 with sep "<s>", sep2 "</s>".
std::string render_llama2(const Dialog& dialog) {
  std::string ret;
  std::size_t i = 0;
  for (const auto& turn : dialog) {
    for (const std::string* message : {&turn.user, &turn.assistant}) {
      if (i == 0 && message->empty()) fail("conversation: the first user message must not be empty (llava_llama_2)");
      if (!message->empty()) {
        std::string m = *message;
        if (i == 0) m = std::string("<<SYS>>\n") + kLlavaLlama2System + "\n<</SYS>>\n\n" + m;
        if (i % 2 == 0) ret += "<s>[INST] " + m + " [/INST]";
        else ret += " " + m + " </s>";
      }
      ++i;
    }
  }
  // ret.lstrip("<s>") strips any leading '<', 's', '>' characters.
  std::size_t k = 0;
  while (k < ret.size() && (ret[k] == '<' || ret[k] == 's' || ret[k] == '>')) ++k;
  return ret.substr(k);
}

}  // namespace

ConvTemplate conv_template_from_name(const std::string& name) {
  if (name == "llava_v1") return ConvTemplate::kLlavaV1;
  if (name == "llava_llama_2") return ConvTemplate::kLlavaLlama2;
  fail("conv_type \"", name, "\" is not supported; expected \"llava_v1\" (the reference default) or \"llava_llama_2\"");
}

std::string conv_template_name(ConvTemplate t) {
  return t == ConvTemplate::kLlavaV1 ? "llava_v1" : "llava_llama_2";
}

std::string wrap_image_tokens(const std::string& text) {
  return replace_all(text, "<image>", "<im_start><image><im_end>");
}

std::string render_conversation(const Dialog& dialog, ConvTemplate t, bool use_mm_start_end) {
  std::string prompt = t == ConvTemplate::kLlavaV1 ? render_two(dialog) : render_llama2(dialog);
  return use_mm_start_end ? wrap_image_tokens(prompt) : prompt;
}

std::string render_generation_prompt(const std::string& question, ConvTemplate t, bool use_mm_start_end) {
  return render_conversation(Dialog{Turn{"<image>\n" + question, ""}}, t, use_mm_start_end);
}

}  // namespace m2sa
