#pragma once
// Multi-turn sessions (POST /v1/sessions, /v1/sessions/{id}/ask, DELETE /v1/sessions/{id}): one image, its encodings
// (preprocessed inputs; CLIP features and SAM embeddings once a question needed them) and the conversation so far.
// A session serves one question at a time (409 while busy); it expires after `ttl_s` unused, and beyond `max_sessions`
// the least recently used idle session is dropped. Thread-safe; a session's encodings and history are touched only by
// the scheduler thread while the session is acquired.
#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "m2sa/infer/predictor.h"
#include "m2sa/serve/request.h"
#include "m2sa/text/dialog.h"

namespace m2sa::serve {

struct Session {
  std::string id;
  at::Tensor rgb;                              // uint8 [H, W, 3]
  infer::Predictor::EncodedImages encoded;     // one image
  Dialog history;                              // complete rounds (the first user turn with "<image>\n")
  std::chrono::steady_clock::time_point last_used;
  bool busy = false;
  int64_t clip_encodings = 0, sam_encodings = 0;
};

class SessionStore {
 public:
  SessionStore(int64_t max_sessions, double ttl_s);

  // A new session holding the image and its preprocessed inputs; returns it (idle).
  std::shared_ptr<Session> create(const at::Tensor& rgb, infer::Predictor::EncodedImages encoded);
  // Marks the session busy and returns it; nullptr with `error` set (404 unknown or expired, 409 busy).
  std::shared_ptr<Session> acquire(const std::string& id, ApiError& error);
  void release(const std::shared_ptr<Session>& session);
  // Ends a session; false if unknown. A busy session ends when its question is answered.
  bool remove(const std::string& id);
  // Drops expired sessions; returns the live count.
  int64_t expire();
  int64_t size() const;

 private:
  void evict_locked();
  int64_t max_sessions_;
  std::chrono::duration<double> ttl_;
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<Session>> sessions_;
};

// 32 random lowercase hex digits.
std::string new_session_id();

}  // namespace m2sa::serve
