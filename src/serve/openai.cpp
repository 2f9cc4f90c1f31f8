#include "m2sa/serve/openai.h"

#include "m2sa/serve/sessions.h"

namespace m2sa::serve {

Dialog chat_dialog(const ChatRequest& r) {
  Dialog d = r.history;
  d.push_back(Turn{r.question, ""});
  d.front().user = "<image>\n" + d.front().user;
  return d;
}

const char* openai_finish_reason(const std::string& finish_reason) {
  return finish_reason == "eos" ? "stop" : "length";
}

json chat_completion(const std::string& id, int64_t created, const std::string& model, const infer::Prediction& p,
                     json extra) {
  const auto completion = static_cast<int64_t>(p.output_ids.size());
  return json{{"id", id},
              {"object", "chat.completion"},
              {"created", created},
              {"model", model},
              {"choices", json::array({json{{"index", 0},
                                            {"message", {{"role", "assistant"}, {"content", p.answer}}},
                                            {"logprobs", nullptr},
                                            {"finish_reason", openai_finish_reason(p.finish_reason)}}})},
              {"usage",
               {{"prompt_tokens", p.timings.prompt_tokens},
                {"completion_tokens", completion},
                {"total_tokens", p.timings.prompt_tokens + completion}}},
              {"m2sa", std::move(extra)}};
}

json chat_chunk(const std::string& id, int64_t created, const std::string& model, const json& delta,
                const std::string& finish_reason, json extra) {
  json choice{{"index", 0}, {"delta", delta}, {"logprobs", nullptr}};
  choice["finish_reason"] = finish_reason.empty() ? json(nullptr) : json(finish_reason);
  json j{{"id", id}, {"object", "chat.completion.chunk"}, {"created", created}, {"model", model},
         {"choices", json::array({choice})}};
  if (!extra.is_null()) j["m2sa"] = std::move(extra);
  return j;
}

std::string chat_completion_id() { return "chatcmpl-" + new_session_id().substr(0, 24); }

}  // namespace m2sa::serve
