// Fuzz target: the request parsers of `m2sa serve` (serve/request.h), as the HTTP layer calls them. The first byte
// picks the parser: 0 POST /v1/segment (JSON), 1 /v1/sessions, 2 /v1/sessions/{id}/ask, 3 /v1/chat/completions,
// 4 /v1/segment as multipart fields (the rest split at "\n--\n" into parts "name\nfilename\ncontent"), 5 an image
// field alone (base64 / data URI). Parsers return errors instead of throwing: any exception is a finding, and so is
// an error that is not a 4xx naming a field.
#include <string>
#include <vector>

#include "fuzz_target.h"
#include "m2sa/serve/request.h"

namespace {

m2sa::serve::ServeLimits fuzz_limits() {
  m2sa::serve::ServeLimits l;
  l.max_image_pixels = 1 << 20;  // keep decoding cheap; the checks are the same
  l.max_image_side = 4096;
  l.max_image_bytes = 1 << 20;
  l.max_question_bytes = 512;
  l.max_messages = 16;
  return l;
}

template <typename T>
void check(const m2sa::serve::Parsed<T>& p) {
  if (p.ok()) return;
  M2SA_FUZZ_ASSERT(p.error.status >= 400 && p.error.status < 500);
  M2SA_FUZZ_ASSERT(!p.error.field.empty());
  M2SA_FUZZ_ASSERT(!p.error.message.empty());
  (void)m2sa::serve::error_json(p.error);
}

std::vector<m2sa::serve::FormField> split_fields(const std::string& s) {
  std::vector<m2sa::serve::FormField> fields;
  std::size_t pos = 0;
  while (pos <= s.size() && fields.size() < 16) {
    std::size_t end = s.find("\n--\n", pos);
    if (end == std::string::npos) end = s.size();
    const std::string part = s.substr(pos, end - pos);
    m2sa::serve::FormField f;
    const std::size_t a = part.find('\n');
    const std::size_t b = a == std::string::npos ? std::string::npos : part.find('\n', a + 1);
    f.name = part.substr(0, a);
    if (a != std::string::npos) f.filename = part.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1);
    if (b != std::string::npos) f.content = part.substr(b + 1);
    fields.push_back(std::move(f));
    pos = end + 4;
  }
  return fields;
}

}  // namespace

M2SA_FUZZ_TARGET(serve_request) {
  if (size == 0) return 0;
  static const m2sa::serve::ServeLimits limits = fuzz_limits();
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  m2sa::serve::Body body;
  body.json_text = rest;
  switch (data[0] % 6) {
    case 0: check(m2sa::serve::parse_segment_request(body, limits)); break;
    case 1: check(m2sa::serve::parse_session_create_request(body, limits)); break;
    case 2: check(m2sa::serve::parse_ask_request(body, limits)); break;
    case 3: check(m2sa::serve::parse_chat_request(body, limits)); break;
    case 4:
      body.multipart = true;
      body.json_text.clear();
      body.fields = split_fields(rest);
      check(m2sa::serve::parse_segment_request(body, limits));
      break;
    default: check(m2sa::serve::decode_image_field(rest, true, "image", limits)); break;
  }
  return 0;
}
