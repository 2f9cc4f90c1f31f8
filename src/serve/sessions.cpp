#include "m2sa/serve/sessions.h"

#include <random>
#include <utility>

namespace m2sa::serve {

std::string new_session_id() {
  static std::mutex mutex;
  static std::random_device device;
  static std::mt19937_64 rng(((static_cast<uint64_t>(device()) << 32) ^ device()));
  std::lock_guard<std::mutex> lock(mutex);
  static const char* hex = "0123456789abcdef";
  std::string id;
  for (int i = 0; i < 2; ++i) {
    uint64_t v = rng() ^ (static_cast<uint64_t>(device()) << 16);
    for (int k = 0; k < 16; ++k, v >>= 4) id.push_back(hex[v & 0xF]);
  }
  return id;
}

SessionStore::SessionStore(int64_t max_sessions, double ttl_s) : max_sessions_(max_sessions), ttl_(ttl_s) {}

std::shared_ptr<Session> SessionStore::create(const at::Tensor& rgb, infer::Predictor::EncodedImages encoded) {
  auto s = std::make_shared<Session>();
  s->id = new_session_id();
  s->rgb = rgb;
  s->encoded = std::move(encoded);
  s->last_used = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(mutex_);
  sessions_[s->id] = s;
  evict_locked();
  return s;
}

void SessionStore::evict_locked() {
  const auto now = std::chrono::steady_clock::now();
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    if (!it->second->busy && now - it->second->last_used > ttl_) it = sessions_.erase(it);
    else ++it;
  }
  while (static_cast<int64_t>(sessions_.size()) > max_sessions_) {
    auto oldest = sessions_.end();
    for (auto it = sessions_.begin(); it != sessions_.end(); ++it)
      if (!it->second->busy && (oldest == sessions_.end() || it->second->last_used < oldest->second->last_used))
        oldest = it;
    if (oldest == sessions_.end()) break;  // all busy
    sessions_.erase(oldest);
  }
}

std::shared_ptr<Session> SessionStore::acquire(const std::string& id, ApiError& error) {
  std::lock_guard<std::mutex> lock(mutex_);
  evict_locked();
  const auto it = sessions_.find(id);
  if (it == sessions_.end()) {
    error = ApiError{404, "session", "unknown session \"" + id.substr(0, 64) + "\" (never created, deleted or expired)"};
    return nullptr;
  }
  if (it->second->busy) {
    error = ApiError{409, "session", "the session is answering another question; ask again when it is done"};
    return nullptr;
  }
  it->second->busy = true;
  return it->second;
}

void SessionStore::release(const std::shared_ptr<Session>& s) {
  std::lock_guard<std::mutex> lock(mutex_);
  s->busy = false;
  s->last_used = std::chrono::steady_clock::now();
}

bool SessionStore::remove(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  return sessions_.erase(id) > 0;
}

int64_t SessionStore::expire() {
  std::lock_guard<std::mutex> lock(mutex_);
  evict_locked();
  return static_cast<int64_t>(sessions_.size());
}

int64_t SessionStore::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(sessions_.size());
}

}  // namespace m2sa::serve
