#pragma once
// Parsing and validation of the server's requests, independent of HTTP (unit tests and fuzz/serve_request_fuzz.cpp
// drive it directly). A request body is JSON or multipart form fields; each parser returns the validated request or
// an ApiError that names the field at fault. Parsers never throw on bad input (only on bugs), never decode an image
// that the limits refuse, and allocate nothing beyond the body's size and the limits.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "m2sa/serve/limits.h"
#include "m2sa/text/dialog.h"

namespace m2sa::serve {

// An error answer: HTTP status, the field at fault ("body", "image", "question", "messages[1].content[0]", ...) and a
// message for people.
struct ApiError {
  int status = 400;
  std::string field;
  std::string message;
};

// A multipart/form-data part (httplib parses the framing).
struct FormField {
  std::string name;
  std::string filename;
  std::string content_type;
  std::string content;
};

// A request body: JSON text, or form fields (multipart).
struct Body {
  bool multipart = false;
  std::string json_text;
  std::vector<FormField> fields;
};

enum class MaskFormat { kRle, kPng };
const char* mask_format_name(MaskFormat format);

// What to return besides the answer.
struct OutputRequest {
  MaskFormat mask_format = MaskFormat::kRle;
  bool overlay = false;
  bool masks = true;
};

struct DecodedImage {
  at::Tensor rgb;  // uint8 [H, W, 3]
  std::string sha256;  // of the encoded bytes
};

// POST /v1/segment: {"image": base64 | data URI, "question", "max_new_tokens"?, "mask_format"?: "rle"|"png",
// "overlay"?: bool, "masks"?: bool}, or the same as multipart fields ("image" a file).
struct SegmentRequest {
  DecodedImage image;
  std::string question;
  int64_t max_new_tokens = 0;
  OutputRequest output;
};

// POST /v1/sessions: {"image"} (JSON or multipart).
struct SessionCreateRequest {
  DecodedImage image;
};

// POST /v1/sessions/{id}/ask: {"question", "max_new_tokens"?, "mask_format"?, "overlay"?, "masks"?}.
struct AskRequest {
  std::string question;
  int64_t max_new_tokens = 0;
  OutputRequest output;
};

// POST /v1/chat/completions (OpenAI format): messages with one image_url data URI in the first user message;
// earlier user/assistant turns become the conversation history, the last user message is the question.
struct ChatRequest {
  DecodedImage image;
  Dialog history;        // complete earlier rounds (user text, assistant text), without the "<image>\n" prefix
  std::string question;  // the last user message's text
  int64_t max_tokens = 0;
  bool stream = false;
  std::string model;     // as given (any string is accepted; the response echoes the served model's name)
  OutputRequest output;  // from the extra field "m2sa": {"mask_format", "overlay", "masks"}
};

template <typename T>
struct Parsed {
  std::optional<T> value;
  ApiError error;  // when !value
  bool ok() const { return value.has_value(); }
};

Parsed<SegmentRequest> parse_segment_request(const Body& body, const ServeLimits& limits);
Parsed<SessionCreateRequest> parse_session_create_request(const Body& body, const ServeLimits& limits);
Parsed<AskRequest> parse_ask_request(const Body& body, const ServeLimits& limits);
Parsed<ChatRequest> parse_chat_request(const Body& body, const ServeLimits& limits);

// The image of a request: raw bytes (a file) or base64 text, optionally a data URI ("data:image/png;base64,...").
// Only PNG and JPEG, within the limits; errors name `field`.
Parsed<DecodedImage> decode_image_field(const std::string& text, bool base64, const std::string& field,
                                        const ServeLimits& limits);
// Standard or URL-safe base64 (padding optional, whitespace ignored); nullopt on any other character or a bad length.
// Refuses (nullopt) output longer than max_bytes.
std::optional<std::string> base64_decode(const std::string& text, int64_t max_bytes);

// A session id as the server makes them (32 lowercase hex digits).
bool valid_session_id(const std::string& id);

// The JSON error document {"error": {"status", "field", "message", "type", "param"}} (OpenAI clients read
// error.message; `param` = field).
std::string error_json(const ApiError& error);

}  // namespace m2sa::serve
