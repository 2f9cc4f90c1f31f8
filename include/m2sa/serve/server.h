#pragma once
// The HTTP service of `m2sa serve` (docs/SERVE.md): cpp-httplib's server (Debian's libcpp-httplib) routes requests to
// the parsers (request.h), the scheduler (scheduler.h), the sessions and the OpenAI adapter, and serves the web page
// (web_assets.h). Every error is a JSON document naming the field at fault (request.h, error_json).
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "m2sa/core/json_reader.h"
#include "m2sa/infer/predictor.h"
#include "m2sa/serve/limits.h"
#include "m2sa/serve/metrics.h"
#include "m2sa/serve/scheduler.h"
#include "m2sa/serve/sessions.h"

namespace m2sa::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (port() tells which)
  ServeLimits limits;
  std::string model_name = "m2sa";  // echoed by /v1/models and chat completions
  json model_info = json::object();  // more fields of /v1/models' entry (config, precision, device)
  int threads = 0;                   // HTTP worker threads; 0: max_batch + max_queue + 8 (at most 256)
};

class Server {
 public:
  Server(const infer::Predictor& predictor, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the listening socket (throws m2sa::Error naming host and port on failure); returns the port.
  int bind();
  // Serves until stop() (blocking). Returns after the requests in flight were answered.
  void listen();
  // Stops accepting connections; listen() returns once the requests in flight are answered (thread-safe).
  void stop();
  int port() const { return port_; }

  Scheduler& scheduler() { return *scheduler_; }
  Metrics& metrics() { return metrics_; }
  SessionStore& sessions() { return sessions_; }

 private:
  struct Impl;
  const infer::Predictor& predictor_;
  ServerOptions options_;
  Metrics metrics_;
  SessionStore sessions_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace m2sa::serve
