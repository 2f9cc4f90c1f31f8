#pragma once
// The server's limits and their defaults (docs/SERVE.md, "Limits"); `m2sa serve` flags set each of them.
#include <cstdint>

namespace m2sa::serve {

struct ServeLimits {
  int64_t max_body_bytes = 32ll << 20;     // a request body (JSON or multipart), bytes: 413 beyond
  int64_t max_image_bytes = 24ll << 20;    // the encoded image file, bytes (after base64 decoding)
  int64_t max_image_pixels = 40'000'000;   // width x height, read from the header before decoding
  int64_t max_image_side = 16384;          // width and height each
  int64_t max_question_bytes = 4000;       // a question (UTF-8 bytes); empty or blank questions are refused too
  int64_t default_max_new_tokens = 512;    // when a request gives none (LISA chat.py)
  int64_t max_new_tokens_limit = 2048;     // the most a request may ask for
  int64_t max_messages = 64;               // chat completions: messages per request
  int64_t max_batch = 16;                  // sequences decoded together
  int64_t max_queue = 64;                  // requests waiting for a place in the batch: 503 + Retry-After beyond
  double timeout_s = 300;                  // per request, from arrival to answer: 504 beyond
  int64_t max_sessions = 64;               // live sessions: the least recently used one is dropped beyond
  double session_ttl_s = 1800;             // a session unused this long expires
};

}  // namespace m2sa::serve
