#pragma once
// The OpenAI chat-completions adapter (POST /v1/chat/completions): the request's conversation as an M2SA dialog,
// and the answer as a chat.completion (or chat.completion.chunk events when streaming). The masks travel in the
// extra top-level field "m2sa" (prediction_response: targets with masks, overlay, timings).
#include <cstdint>
#include <string>

#include "m2sa/core/json_reader.h"
#include "m2sa/infer/predictor.h"
#include "m2sa/serve/request.h"
#include "m2sa/text/dialog.h"

namespace m2sa::serve {

// The dialog to answer: the history, then the question with an empty answer; the first user turn gets "<image>\n".
Dialog chat_dialog(const ChatRequest& request);

// "stop" (EOS), "length" (max_tokens or the context).
const char* openai_finish_reason(const std::string& finish_reason);

// A chat.completion: id, created (Unix seconds), model (the served model's name), one choice, usage; `m2sa`: the
// prediction_response document.
json chat_completion(const std::string& id, int64_t created, const std::string& model, const infer::Prediction& p,
                     json extra);
// One chat.completion.chunk: `delta` ({"role": "assistant"} first, then {"content": "..."}, {} at the end),
// finish_reason null until the last chunk, which also carries `m2sa` (when not null).
json chat_chunk(const std::string& id, int64_t created, const std::string& model, const json& delta,
                const std::string& finish_reason, json extra = nullptr);

// "chatcmpl-" + 24 random hex digits.
std::string chat_completion_id();

}  // namespace m2sa::serve
