#include "m2sa/serve/request.h"

#include <algorithm>
#include <cctype>
#include <string_view>
#include <utility>

#include "m2sa/core/error.h"
#include "m2sa/core/json_reader.h"
#include "m2sa/core/sha256.h"
#include "m2sa/vision/image_io.h"

namespace m2sa::serve {

namespace {

// A request error found while parsing: thrown (as the project's m2sa::Error) with the field recorded beside it, and
// turned into an ApiError at the parser's top.
struct FieldTracker {
  std::string field = "body";
  int status = 400;
};

[[noreturn]] void bad(FieldTracker& t, const std::string& field, const std::string& message, int status = 400) {
  t.field = field;
  t.status = status;
  throw Error(message);
}

template <typename T, typename Fn>
Parsed<T> guarded(Fn&& fn) {
  FieldTracker t;
  Parsed<T> out;
  try {
    out.value = fn(t);
  } catch (const Error& e) {
    out.value.reset();
    out.error = ApiError{t.status, t.field, e.what()};
  }
  return out;
}

json parse_json_object(FieldTracker& t, const std::string& text) {
  if (text.empty()) bad(t, "body", "the request body is empty; expected a JSON object (or multipart form fields)");
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) bad(t, "body", "the request body is not valid JSON");
  if (!j.is_object()) bad(t, "body", std::string("the request body must be a JSON object, got ") + j.type_name());
  return j;
}

// Form fields by name (the first of each name).
const FormField* form_field(const Body& body, const std::string& name) {
  for (const auto& f : body.fields)
    if (f.name == name) return &f;
  return nullptr;
}

bool is_blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; });
}

bool valid_utf8(const std::string& s) {
  std::size_t i = 0;
  const auto n = s.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + len > n) return false;
    for (std::size_t k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return false;
    i += len;
  }
  return true;
}

std::string check_question(FieldTracker& t, const std::string& field, const std::string& q, const ServeLimits& limits) {
  if (q.empty() || is_blank(q)) bad(t, field, "the question is empty");
  if (static_cast<int64_t>(q.size()) > limits.max_question_bytes)
    bad(t, field, "the question is " + std::to_string(q.size()) + " bytes long, above the limit of " +
                      std::to_string(limits.max_question_bytes));
  if (!valid_utf8(q)) bad(t, field, "the question is not valid UTF-8");
  if (q.find("<image>") != std::string::npos)
    bad(t, field, "the question must not contain \"<image>\" (the image placeholder is added by the server)");
  if (q.find('\0') != std::string::npos) bad(t, field, "the question contains a NUL character");
  return q;
}

// ---- typed JSON fields ----

std::string get_string(FieldTracker& t, const json& j, const std::string& key, const std::string& field) {
  const json& v = j.at(key);
  if (!v.is_string()) bad(t, field, "\"" + key + "\" must be a string, got " + v.type_name());
  return v.get<std::string>();
}

int64_t get_tokens(FieldTracker& t, const json& v, const std::string& field, const ServeLimits& limits) {
  if (!v.is_number_integer())
    bad(t, field, std::string("must be an integer, got ") + (v.is_number_float() ? "a fractional number" : v.type_name()));
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(limits.max_new_tokens_limit))
    bad(t, field, "must be in [1, " + std::to_string(limits.max_new_tokens_limit) + "]");
  const int64_t n = v.get<int64_t>();
  if (n < 1 || n > limits.max_new_tokens_limit)
    bad(t, field, "must be in [1, " + std::to_string(limits.max_new_tokens_limit) + "], got " + std::to_string(n));
  return n;
}

bool get_bool(FieldTracker& t, const json& v, const std::string& field) {
  if (!v.is_boolean()) bad(t, field, std::string("must be true or false, got ") + v.type_name());
  return v.get<bool>();
}

MaskFormat get_mask_format(FieldTracker& t, const std::string& s, const std::string& field) {
  if (s == "rle") return MaskFormat::kRle;
  if (s == "png") return MaskFormat::kPng;
  bad(t, field, "must be \"rle\" or \"png\", got \"" + s.substr(0, 40) + "\"");
}

// ---- form fields (strings) ----

int64_t form_tokens(FieldTracker& t, const std::string& s, const std::string& field, const ServeLimits& limits) {
  if (s.empty() || s.size() > 18 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
    bad(t, field, "must be a positive integer, got \"" + s.substr(0, 40) + "\"");
  return get_tokens(t, json(std::stoll(s)), field, limits);
}

bool form_bool(FieldTracker& t, const std::string& s, const std::string& field) {
  if (s == "true" || s == "1" || s == "on") return true;
  if (s == "false" || s == "0" || s == "off") return false;
  bad(t, field, "must be true or false, got \"" + s.substr(0, 40) + "\"");
}

const std::vector<std::string> kOutputKeys = {"mask_format", "overlay", "masks"};

OutputRequest json_output(FieldTracker& t, const json& j, const std::string& prefix) {
  OutputRequest o;
  if (j.contains("mask_format")) {
    const std::string field = prefix + "mask_format";
    if (!j["mask_format"].is_string()) bad(t, field, std::string("must be a string, got ") + j["mask_format"].type_name());
    o.mask_format = get_mask_format(t, j["mask_format"].get<std::string>(), field);
  }
  if (j.contains("overlay")) o.overlay = get_bool(t, j["overlay"], prefix + "overlay");
  if (j.contains("masks")) o.masks = get_bool(t, j["masks"], prefix + "masks");
  return o;
}

OutputRequest form_output(FieldTracker& t, const Body& b) {
  OutputRequest o;
  if (const FormField* f = form_field(b, "mask_format")) o.mask_format = get_mask_format(t, f->content, "mask_format");
  if (const FormField* f = form_field(b, "overlay")) o.overlay = form_bool(t, f->content, "overlay");
  if (const FormField* f = form_field(b, "masks")) o.masks = form_bool(t, f->content, "masks");
  return o;
}

void check_known_keys(FieldTracker& t, const json& j, const std::vector<std::string>& known) {
  for (auto it = j.begin(); it != j.end(); ++it)
    if (std::find(known.begin(), known.end(), it.key()) == known.end())
      bad(t, it.key().substr(0, 64), "unknown field \"" + it.key().substr(0, 64) + "\"");
}

void check_known_form_fields(FieldTracker& t, const Body& b, const std::vector<std::string>& known) {
  for (const auto& f : b.fields)
    if (std::find(known.begin(), known.end(), f.name) == known.end())
      bad(t, f.name.substr(0, 64), "unknown form field \"" + f.name.substr(0, 64) + "\"");
}

DecodedImage take_image(FieldTracker& t, const Parsed<DecodedImage>& p) {
  if (!p.ok()) bad(t, p.error.field, p.error.message, p.error.status);
  return *p.value;
}

// The image of a JSON or multipart body (field "image").
DecodedImage body_image(FieldTracker& t, const Body& b, const json* j, const ServeLimits& limits) {
  if (b.multipart) {
    const FormField* f = form_field(b, "image");
    if (!f) bad(t, "image", "missing form field \"image\" (the image file)");
    // A file part carries raw bytes; a plain text field may carry base64 or a data URI.
    const bool raw = !f->filename.empty() || (!f->content.empty() && (static_cast<unsigned char>(f->content[0]) == 0xFF ||
                                                                     static_cast<unsigned char>(f->content[0]) == 0x89));
    return take_image(t, decode_image_field(f->content, !raw, "image", limits));
  }
  if (!j->contains("image")) bad(t, "image", "missing field \"image\" (base64 or a data: URI)");
  return take_image(t, decode_image_field(get_string(t, *j, "image", "image"), true, "image", limits));
}

}  // namespace

const char* mask_format_name(MaskFormat format) { return format == MaskFormat::kPng ? "png" : "rle"; }

std::optional<std::string> base64_decode(const std::string& text, int64_t max_bytes) {
  auto value = [](unsigned char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  std::string out;
  out.reserve(std::min<std::size_t>(text.size() / 4 * 3 + 3, static_cast<std::size_t>(std::max<int64_t>(max_bytes, 0))));
  uint32_t acc = 0;
  int bits = 0;
  std::size_t symbols = 0, padding = 0;
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    if (c == '=') {
      ++padding;
      continue;
    }
    if (padding > 0) return std::nullopt;  // data after padding
    const int v = value(c);
    if (v < 0) return std::nullopt;
    ++symbols;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (static_cast<int64_t>(out.size()) >= max_bytes) return std::nullopt;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  if (symbols % 4 == 1 || padding > 2 || (padding > 0 && (symbols + padding) % 4 != 0)) return std::nullopt;
  return out;
}

bool valid_session_id(const std::string& id) {
  return id.size() == 32 && std::all_of(id.begin(), id.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

Parsed<DecodedImage> decode_image_field(const std::string& text, bool base64, const std::string& field,
                                        const ServeLimits& limits) {
  return guarded<DecodedImage>([&](FieldTracker& t) {
    std::string bytes;
    if (base64) {
      std::string_view payload(text);
      if (payload.substr(0, 5) == "data:") {
        const auto comma = payload.find(',');
        if (comma == std::string_view::npos) bad(t, field, "a data: URI needs a comma before its data");
        const std::string_view meta = payload.substr(5, comma - 5);
        if (meta.size() < 7 || meta.substr(meta.size() - 7) != ";base64")
          bad(t, field, "only base64 data: URIs are accepted (data:image/png;base64,...)");
        const std::string_view mime = meta.substr(0, meta.size() - 7);
        if (!mime.empty() && mime != "image/png" && mime != "image/jpeg" && mime != "image/jpg")
          bad(t, field, "the data: URI's type must be image/png or image/jpeg, got \"" +
                            std::string(mime.substr(0, 40)) + "\"");
        payload = payload.substr(comma + 1);
      }
      if (payload.empty()) bad(t, field, "the image is empty");
      // 4 characters carry 3 bytes: refuse what cannot fit the limit before decoding anything.
      if (static_cast<int64_t>(payload.size() / 4) * 3 > limits.max_image_bytes + 3)
        bad(t, field, "the image is larger than the limit of " + std::to_string(limits.max_image_bytes) + " bytes", 413);
      std::optional<std::string> d = base64_decode(std::string(payload), limits.max_image_bytes);
      if (!d) bad(t, field, "the image is not valid base64");
      bytes = std::move(*d);
    } else {
      bytes = text;
      if (static_cast<int64_t>(bytes.size()) > limits.max_image_bytes)
        bad(t, field, "the image is larger than the limit of " + std::to_string(limits.max_image_bytes) + " bytes", 413);
    }
    if (bytes.empty()) bad(t, field, "the image is empty");
    const auto [w, h] = image_header_size(bytes);
    if (w > limits.max_image_side || h > limits.max_image_side)
      bad(t, field, "the image is " + std::to_string(w) + "x" + std::to_string(h) + " pixels; each side may be at most " +
                        std::to_string(limits.max_image_side));
    ImageLimits il;
    il.max_pixels = limits.max_image_pixels;
    DecodedImage out;
    try {
      out.rgb = decode_image_rgb(bytes, field, il);
    } catch (const Error& e) {
      bad(t, field, e.what());
    }
    if (out.rgb.size(0) > limits.max_image_side || out.rgb.size(1) > limits.max_image_side)
      bad(t, field, "the image's sides may be at most " + std::to_string(limits.max_image_side) + " pixels");
    out.sha256 = sha256_hex(bytes);
    return out;
  });
}

Parsed<SegmentRequest> parse_segment_request(const Body& b, const ServeLimits& limits) {
  return guarded<SegmentRequest>([&](FieldTracker& t) {
    SegmentRequest r;
    r.max_new_tokens = limits.default_max_new_tokens;
    const std::vector<std::string> known = {"image", "question", "max_new_tokens", "mask_format", "overlay", "masks"};
    if (b.multipart) {
      check_known_form_fields(t, b, known);
      const FormField* q = form_field(b, "question");
      if (!q) bad(t, "question", "missing form field \"question\"");
      r.question = check_question(t, "question", q->content, limits);
      if (const FormField* f = form_field(b, "max_new_tokens")) r.max_new_tokens = form_tokens(t, f->content, "max_new_tokens", limits);
      r.output = form_output(t, b);
      r.image = body_image(t, b, nullptr, limits);
      return r;
    }
    const json j = parse_json_object(t, b.json_text);
    check_known_keys(t, j, known);
    if (!j.contains("question")) bad(t, "question", "missing field \"question\"");
    r.question = check_question(t, "question", get_string(t, j, "question", "question"), limits);
    if (j.contains("max_new_tokens")) r.max_new_tokens = get_tokens(t, j["max_new_tokens"], "max_new_tokens", limits);
    r.output = json_output(t, j, "");
    r.image = body_image(t, b, &j, limits);  // last: the costly part, after every cheap check
    return r;
  });
}

Parsed<SessionCreateRequest> parse_session_create_request(const Body& b, const ServeLimits& limits) {
  return guarded<SessionCreateRequest>([&](FieldTracker& t) {
    SessionCreateRequest r;
    if (b.multipart) {
      check_known_form_fields(t, b, {"image"});
      r.image = body_image(t, b, nullptr, limits);
      return r;
    }
    const json j = parse_json_object(t, b.json_text);
    check_known_keys(t, j, {"image"});
    r.image = body_image(t, b, &j, limits);
    return r;
  });
}

Parsed<AskRequest> parse_ask_request(const Body& b, const ServeLimits& limits) {
  return guarded<AskRequest>([&](FieldTracker& t) {
    AskRequest r;
    r.max_new_tokens = limits.default_max_new_tokens;
    const std::vector<std::string> known = {"question", "max_new_tokens", "mask_format", "overlay", "masks"};
    if (b.multipart) {
      check_known_form_fields(t, b, known);
      const FormField* q = form_field(b, "question");
      if (!q) bad(t, "question", "missing form field \"question\"");
      r.question = check_question(t, "question", q->content, limits);
      if (const FormField* f = form_field(b, "max_new_tokens")) r.max_new_tokens = form_tokens(t, f->content, "max_new_tokens", limits);
      r.output = form_output(t, b);
      return r;
    }
    const json j = parse_json_object(t, b.json_text);
    check_known_keys(t, j, known);
    if (!j.contains("question")) bad(t, "question", "missing field \"question\"");
    r.question = check_question(t, "question", get_string(t, j, "question", "question"), limits);
    if (j.contains("max_new_tokens")) r.max_new_tokens = get_tokens(t, j["max_new_tokens"], "max_new_tokens", limits);
    r.output = json_output(t, j, "");
    return r;
  });
}

Parsed<ChatRequest> parse_chat_request(const Body& b, const ServeLimits& limits) {
  return guarded<ChatRequest>([&](FieldTracker& t) {
    if (b.multipart) bad(t, "body", "chat completions take a JSON body");
    const json j = parse_json_object(t, b.json_text);
    ChatRequest r;
    r.max_tokens = limits.default_max_new_tokens;
    if (j.contains("model")) r.model = get_string(t, j, "model", "model");
    if (j.contains("stream")) r.stream = get_bool(t, j["stream"], "stream");
    if (j.contains("max_tokens") && !j["max_tokens"].is_null()) r.max_tokens = get_tokens(t, j["max_tokens"], "max_tokens", limits);
    if (j.contains("max_completion_tokens") && !j["max_completion_tokens"].is_null())
      r.max_tokens = get_tokens(t, j["max_completion_tokens"], "max_completion_tokens", limits);
    if (j.contains("temperature") && !j["temperature"].is_null()) {
      const json& v = j["temperature"];
      if (!v.is_number()) bad(t, "temperature", std::string("must be a number, got ") + v.type_name());
      if (v.get<double>() != 0.0)
        bad(t, "temperature", "only greedy decoding is supported: temperature must be 0 (or absent)");
    }
    if (j.contains("n") && !j["n"].is_null() && !(j["n"].is_number_integer() && j["n"].get<int64_t>() == 1))
      bad(t, "n", "only n = 1 is supported");
    if (j.contains("m2sa")) {
      if (!j["m2sa"].is_object()) bad(t, "m2sa", std::string("must be an object, got ") + j["m2sa"].type_name());
      check_known_keys(t, j["m2sa"], kOutputKeys);
      r.output = json_output(t, j["m2sa"], "m2sa.");
    }
    if (!j.contains("messages")) bad(t, "messages", "missing field \"messages\"");
    const json& msgs = j["messages"];
    if (!msgs.is_array()) bad(t, "messages", std::string("must be an array, got ") + msgs.type_name());
    if (msgs.empty()) bad(t, "messages", "must not be empty");
    if (static_cast<int64_t>(msgs.size()) > limits.max_messages)
      bad(t, "messages", "at most " + std::to_string(limits.max_messages) + " messages, got " + std::to_string(msgs.size()));
    // user/assistant turns (system messages are accepted and ignored: the model's template has its own).
    std::vector<std::pair<std::string, std::string>> turns;  // role, text
    bool have_image = false;
    for (std::size_t i = 0; i < msgs.size(); ++i) {
      const std::string mf = "messages[" + std::to_string(i) + "]";
      const json& m = msgs[i];
      if (!m.is_object()) bad(t, mf, std::string("must be an object, got ") + m.type_name());
      if (!m.contains("role") || !m["role"].is_string()) bad(t, mf + ".role", "must be a string");
      const std::string role = m["role"].get<std::string>();
      if (role != "user" && role != "assistant" && role != "system")
        bad(t, mf + ".role", "must be \"user\", \"assistant\" or \"system\", got \"" + role.substr(0, 40) + "\"");
      if (!m.contains("content")) bad(t, mf + ".content", "missing");
      const json& c = m["content"];
      std::string text;
      if (c.is_string()) {
        text = c.get<std::string>();
      } else if (c.is_array()) {
        for (std::size_t k = 0; k < c.size(); ++k) {
          const std::string pf = mf + ".content[" + std::to_string(k) + "]";
          const json& part = c[k];
          if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
            bad(t, pf, "must be an object with a \"type\"");
          const std::string type = part["type"].get<std::string>();
          if (type == "text") {
            if (!part.contains("text") || !part["text"].is_string()) bad(t, pf + ".text", "must be a string");
            if (!text.empty()) text += "\n";
            text += part["text"].get<std::string>();
          } else if (type == "image_url") {
            if (role != "user") bad(t, pf, "images are accepted in user messages only");
            if (have_image) bad(t, pf, "one image per conversation (M2SA answers about one image)");
            const json& iu = part.contains("image_url") ? part["image_url"] : json();
            std::string url;
            if (iu.is_string()) url = iu.get<std::string>();
            else if (iu.is_object() && iu.contains("url") && iu["url"].is_string()) url = iu["url"].get<std::string>();
            else bad(t, pf + ".image_url", "must be {\"url\": \"data:image/...;base64,...\"}");
            if (url.rfind("data:", 0) != 0)
              bad(t, pf + ".image_url.url", "must be a data: URI (the server fetches nothing from the network)");
            r.image = take_image(t, decode_image_field(url, true, pf + ".image_url.url", limits));
            have_image = true;
          } else {
            bad(t, pf + ".type", "must be \"text\" or \"image_url\", got \"" + type.substr(0, 40) + "\"");
          }
        }
      } else {
        bad(t, mf + ".content", std::string("must be a string or an array of parts, got ") + c.type_name());
      }
      if (role == "system") continue;
      if (!turns.empty() && turns.back().first == role)
        bad(t, mf + ".role", "user and assistant messages must alternate");
      if (turns.empty() && role != "user") bad(t, mf + ".role", "the conversation must start with a user message");
      turns.emplace_back(role, text);
    }
    if (turns.empty() || turns.back().first != "user") bad(t, "messages", "the last message must be a user message");
    if (!have_image) bad(t, "messages", "no image: put one {\"type\": \"image_url\", \"image_url\": {\"url\": \"data:image/png;base64,...\"}} in the first user message");
    for (std::size_t i = 0; i + 1 < turns.size(); i += 2) {
      const std::string mf = "messages";
      check_question(t, mf, turns[i].second, limits);
      if (turns[i + 1].second.size() > static_cast<std::size_t>(limits.max_question_bytes) * 4)
        bad(t, mf, "an assistant message is too long");
      r.history.push_back(Turn{turns[i].second, turns[i + 1].second});
    }
    r.question = check_question(t, "messages[" + std::to_string(msgs.size() - 1) + "].content", turns.back().second, limits);
    return r;
  });
}

std::string error_json(const ApiError& e) {
  json j{{"error",
          {{"status", e.status},
           {"field", e.field},
           {"param", e.field},
           {"message", e.field.empty() ? e.message : e.field + ": " + e.message},
           {"type", e.status >= 500 ? "server_error" : "invalid_request_error"}}}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace m2sa::serve
