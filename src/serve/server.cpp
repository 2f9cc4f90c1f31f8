#include "m2sa/serve/server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <mutex>
#include <utility>

#include "m2sa/core/error.h"
#include "m2sa/serve/openai.h"
#include "m2sa/serve/response.h"
#include "m2sa/serve/web_assets.h"

namespace m2sa::serve {

namespace {

using SteadyClock = std::chrono::steady_clock;

double serve_seconds_since(SteadyClock::time_point t0) {
  return std::chrono::duration<double>(SteadyClock::now() - t0).count();
}

Body body_of(const httplib::Request& req) {
  Body b;
  if (req.is_multipart_form_data()) {
    b.multipart = true;
    for (const auto& [name, f] : req.files) b.fields.push_back(FormField{f.name, f.filename, f.content_type, f.content});
  } else {
    b.json_text = req.body;
  }
  return b;
}

void send_json(httplib::Response& res, int status, const json& j) {
  res.status = status;
  res.set_content(j.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  if (e.status == 503) res.set_header("Retry-After", "1");
  res.set_content(error_json(e), "application/json");
}

int64_t unix_now() { return static_cast<int64_t>(std::time(nullptr)); }

// The state a streamed chat completion shares between the scheduler (progress) and the HTTP writer.
struct StreamState {
  std::mutex mutex;
  std::condition_variable cv;
  std::string text;      // answer so far
  std::size_t sent = 0;  // bytes of `text` already sent
  bool role_sent = false;
};

}  // namespace

struct Server::Impl {
  httplib::Server http;
  std::atomic<int> listen_fd{-1};
  std::atomic<bool> stopped{false};
};

Server::Server(const infer::Predictor& predictor, ServerOptions options)
    : predictor_(predictor),
      options_(std::move(options)),
      sessions_(options_.limits.max_sessions, options_.limits.session_ttl_s),
      impl_(std::make_unique<Impl>()) {
  const ServeLimits& L = options_.limits;
  M2SA_CHECK(L.timeout_s > 0, "serve: --timeout must be > 0 seconds, got ", L.timeout_s);
  M2SA_CHECK(L.max_sessions >= 1, "serve: --max-sessions must be >= 1, got ", L.max_sessions);
  M2SA_CHECK(L.max_body_bytes >= 1024, "serve: --max-body-bytes must be >= 1024, got ", L.max_body_bytes);
  M2SA_CHECK(L.default_max_new_tokens >= 1 && L.default_max_new_tokens <= L.max_new_tokens_limit,
             "serve: the default max_new_tokens ", L.default_max_new_tokens, " must be in [1, ", L.max_new_tokens_limit, "]");
  scheduler_ = std::make_unique<Scheduler>(predictor_, SchedulerOptions{L.max_batch, L.max_queue}, metrics_);
  httplib::Server& s = impl_->http;
  const int threads = options_.threads > 0
                          ? options_.threads
                          : static_cast<int>(std::min<int64_t>(256, L.max_batch + L.max_queue + 8));
  s.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<std::size_t>(threads)); };
  // The listening socket, kept so that stop() can shut it down (see stop()).
  s.set_socket_options([impl = impl_.get()](socket_t sock) {
    httplib::default_socket_options(sock);
    impl->listen_fd = static_cast<int>(sock);
  });
  s.set_payload_max_length(static_cast<std::size_t>(L.max_body_bytes));
  s.set_keep_alive_timeout(2);
  s.set_read_timeout(30);
  s.set_write_timeout(30);

  s.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    ApiError e{res.status, "", ""};
    if (res.status == 404) e = ApiError{404, "path", "no such endpoint: " + req.method + " " + req.path.substr(0, 200)};
    else if (res.status == 413) e = ApiError{413, "body", "the request body is larger than the server's limit"};
    else if (res.status == 400) e = ApiError{400, "body", "the request could not be read (malformed HTTP, multipart or encoding)"};
    else e.message = "HTTP error " + std::to_string(res.status);
    res.set_content(error_json(e), "application/json");
    return httplib::Server::HandlerResponse::Handled;
  }));
  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    spdlog::error("serve: handler failed: {}", what);
    send_error(res, ApiError{500, "", "internal error: " + what});
  });

  // ---- static page ----
  for (const WebAsset& a : web_assets()) {
    s.Get(a.path, [this, &a](const httplib::Request&, httplib::Response& res) {
      res.set_content(a.body, a.content_type);
      res.set_header("Cache-Control", "no-cache");
      metrics_.request("web", 200, 0);
    });
  }

  // ---- health, models, metrics ----
  s.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, json{{"status", "ok"}, {"model", options_.model_name}, {"queue_depth", scheduler_->queue_depth()},
                             {"running", scheduler_->running()}, {"sessions", sessions_.size()}});
    metrics_.request("health", 200, 0);
  });
  s.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    json m{{"id", options_.model_name}, {"object", "model"}, {"created", 0}, {"owned_by", "m2sa"}};
    for (auto it = options_.model_info.begin(); it != options_.model_info.end(); ++it) m[it.key()] = it.value();
    send_json(res, 200, json{{"object", "list"}, {"data", json::array({m})}});
    metrics_.request("models", 200, 0);
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    metrics_.set_sessions(sessions_.expire());
    res.set_content(metrics_.render(), "text/plain; version=0.0.4");
    metrics_.request("metrics", 200, 0);
  });

  // Preprocessing (resizing, normalising) on this HTTP thread, in parallel with the scheduler's decoding.
  auto preprocess_here = [this](Job& job) {
    const auto t = SteadyClock::now();
    job.encoded = scheduler_->preprocess(job.rgb);
    job.preprocess_s = serve_seconds_since(t);
  };

  // Submits a job and waits for it; fills `error` and returns false when it failed or was refused.
  auto run_job = [this](const std::shared_ptr<Job>& job, ApiError& error) {
    job->deadline = job->arrival + std::chrono::duration_cast<SteadyClock::duration>(
                                       std::chrono::duration<double>(options_.limits.timeout_s));
    if (!scheduler_->submit(job)) {
      error = ApiError{503, "", "the server is busy (the queue is full) or shutting down; retry later"};
      return false;
    }
    if (!job->wait()) {
      error = job->error;
      return false;
    }
    return true;
  };

  // ---- POST /v1/segment ----
  s.Post("/v1/segment", [this, run_job, preprocess_here](const httplib::Request& req, httplib::Response& res) {
    const auto t0 = SteadyClock::now();
    Parsed<SegmentRequest> p = parse_segment_request(body_of(req), options_.limits);
    if (!p.ok()) {
      send_error(res, p.error);
      metrics_.request("segment", p.error.status, serve_seconds_since(t0));
      return;
    }
    auto job = std::make_shared<Job>();
    job->arrival = t0;
    job->rgb = p.value->image.rgb;
    preprocess_here(*job);
    job->dialog = infer::Predictor::prompt_dialog(p.value->question);
    job->max_new_tokens = p.value->max_new_tokens;
    ApiError error;
    if (!run_job(job, error)) {
      send_error(res, error);
    } else {
      send_json(res, 200, prediction_response(*job->prediction, job->rgb, p.value->output,
                                              ServeTimings{job->queue_s, serve_seconds_since(t0)}));
    }
    metrics_.request("segment", res.status, serve_seconds_since(t0));
  });

  // ---- sessions ----
  s.Post("/v1/sessions", [this](const httplib::Request& req, httplib::Response& res) {
    const auto t0 = SteadyClock::now();
    Parsed<SessionCreateRequest> p = parse_session_create_request(body_of(req), options_.limits);
    if (!p.ok()) {
      send_error(res, p.error);
    } else {
      std::shared_ptr<Session> session = sessions_.create(p.value->image.rgb, scheduler_->preprocess(p.value->image.rgb));
      send_json(res, 200, json{{"session_id", session->id},
                               {"image_size", {{"height", session->rgb.size(0)}, {"width", session->rgb.size(1)}}},
                               {"ttl_s", options_.limits.session_ttl_s}});
      metrics_.set_sessions(sessions_.size());
    }
    metrics_.request("sessions", res.status, serve_seconds_since(t0));
  });
  s.Post(R"(/v1/sessions/([^/]+)/ask)", [this, run_job](const httplib::Request& req, httplib::Response& res) {
    const auto t0 = SteadyClock::now();
    const std::string id = req.matches[1];
    Parsed<AskRequest> p = parse_ask_request(body_of(req), options_.limits);
    if (!p.ok()) {
      send_error(res, p.error);
      metrics_.request("ask", res.status, serve_seconds_since(t0));
      return;
    }
    ApiError error;
    std::shared_ptr<Session> session = valid_session_id(id) ? sessions_.acquire(id, error) : nullptr;
    if (!session) {
      if (!valid_session_id(id)) error = ApiError{404, "session", "unknown session \"" + id.substr(0, 64) + "\""};
      send_error(res, error);
      metrics_.request("ask", res.status, serve_seconds_since(t0));
      return;
    }
    auto job = std::make_shared<Job>();
    job->arrival = t0;
    job->session = session;
    job->dialog = session->history;
    job->dialog.push_back(Turn{session->history.empty() ? "<image>\n" + p.value->question : p.value->question, ""});
    job->max_new_tokens = p.value->max_new_tokens;
    const int64_t round = static_cast<int64_t>(session->history.size()) + 1;
    if (!run_job(job, error)) {
      send_error(res, error);
    } else {
      // The answer joins the history as the model's text (ChatSession::ask): decoded ids without </s>, trimmed.
      std::vector<int64_t> ids = job->prediction->output_ids;
      if (!ids.empty() && ids.back() == predictor_.tokenizer().eos_id()) ids.pop_back();
      std::string text = ids.empty() ? std::string() : predictor_.tokenizer().decode(ids);
      const auto b = text.find_first_not_of(" \t\n");
      const auto e = text.find_last_not_of(" \t\n");
      text = b == std::string::npos ? std::string() : text.substr(b, e - b + 1);
      session->history.push_back(Turn{job->dialog.back().user, text});
      json j = prediction_response(*job->prediction, session->rgb, p.value->output,
                                   ServeTimings{job->queue_s, serve_seconds_since(t0)});
      j["session_id"] = id;
      j["round"] = round;
      j["clip_encodings"] = session->clip_encodings;
      j["sam_encodings"] = session->sam_encodings;
      send_json(res, 200, j);
    }
    sessions_.release(session);
    metrics_.request("ask", res.status, serve_seconds_since(t0));
  });
  s.Delete(R"(/v1/sessions/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
    const std::string id = req.matches[1];
    if (valid_session_id(id) && sessions_.remove(id)) send_json(res, 200, json{{"session_id", id}, {"deleted", true}});
    else send_error(res, ApiError{404, "session", "unknown session \"" + id.substr(0, 64) + "\""});
    metrics_.set_sessions(sessions_.size());
    metrics_.request("sessions", res.status, 0);
  });

  // ---- OpenAI chat completions ----
  s.Post("/v1/chat/completions", [this, run_job, preprocess_here](const httplib::Request& req, httplib::Response& res) {
    const auto t0 = SteadyClock::now();
    Parsed<ChatRequest> p = parse_chat_request(body_of(req), options_.limits);
    if (!p.ok()) {
      send_error(res, p.error);
      metrics_.request("chat", res.status, serve_seconds_since(t0));
      return;
    }
    auto job = std::make_shared<Job>();
    job->arrival = t0;
    job->rgb = p.value->image.rgb;
    preprocess_here(*job);
    job->dialog = chat_dialog(*p.value);
    job->max_new_tokens = p.value->max_tokens;
    job->compute_masks = true;
    const std::string id = chat_completion_id();
    const int64_t created = unix_now();
    const std::string model = options_.model_name;
    const OutputRequest output = p.value->output;
    if (!p.value->stream) {
      ApiError error;
      if (!run_job(job, error)) {
        send_error(res, error);
      } else {
        json doc = prediction_response(*job->prediction, job->rgb, output, ServeTimings{job->queue_s, serve_seconds_since(t0)});
        send_json(res, 200, chat_completion(id, created, model, *job->prediction, std::move(doc)));
      }
      metrics_.request("chat", res.status, serve_seconds_since(t0));
      return;
    }
    // Streaming: server-sent events, one chunk per new piece of text, then the finish chunk with the masks.
    auto state = std::make_shared<StreamState>();
    job->on_progress = [state](const std::string& text) {
      {
        std::lock_guard<std::mutex> lock(state->mutex);
        state->text = text;
      }
      state->cv.notify_all();
    };
    job->deadline = job->arrival + std::chrono::duration_cast<SteadyClock::duration>(
                                       std::chrono::duration<double>(options_.limits.timeout_s));
    if (!scheduler_->submit(job)) {
      send_error(res, ApiError{503, "", "the server is busy (the queue is full) or shutting down; retry later"});
      metrics_.request("chat", 503, serve_seconds_since(t0));
      return;
    }
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, job, state, id, created, model, output, t0](std::size_t, httplib::DataSink& sink) {
          auto send = [&](const json& j) {
            const std::string line = "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
            return sink.write(line.data(), line.size());
          };
          std::unique_lock<std::mutex> lock(state->mutex);
          if (!state->role_sent) {
            state->role_sent = true;
            lock.unlock();
            return send(chat_chunk(id, created, model, json{{"role", "assistant"}, {"content", ""}}, ""));
          }
          state->cv.wait_for(lock, std::chrono::milliseconds(50),
                             [&] { return state->text.size() > state->sent || job->done(); });
          if (state->text.size() > state->sent) {
            std::string delta;
            if (state->text.compare(0, state->sent, state->text, 0, state->sent) == 0)
              delta = state->text.substr(state->sent);
            state->sent = state->text.size();
            lock.unlock();
            if (!delta.empty()) return send(chat_chunk(id, created, model, json{{"content", delta}}, ""));
            return true;
          }
          if (!job->done()) return true;
          lock.unlock();
          bool ok = true;
          int status = 200;
          if (job->prediction) {
            json doc = prediction_response(*job->prediction, job->rgb, output, ServeTimings{job->queue_s, serve_seconds_since(t0)});
            ok = send(chat_chunk(id, created, model, json::object(), openai_finish_reason(job->prediction->finish_reason),
                                 std::move(doc)));
          } else {
            status = job->error.status;
            const std::string line = "data: " + error_json(job->error) + "\n\n";
            ok = sink.write(line.data(), line.size());
          }
          if (ok) {
            const std::string done = "data: [DONE]\n\n";
            sink.write(done.data(), done.size());
          }
          sink.done();
          metrics_.request("chat", status, serve_seconds_since(t0));
          return true;
        });
  });
}

Server::~Server() {
  stop();
  scheduler_->stop();
}

int Server::bind() {
  httplib::Server& s = impl_->http;
  if (options_.port == 0) {
    port_ = s.bind_to_any_port(options_.host);
    M2SA_CHECK(port_ > 0, "serve: cannot listen on ", options_.host, " (any port)");
  } else {
    M2SA_CHECK(s.bind_to_port(options_.host, options_.port), "serve: cannot listen on ", options_.host, ":",
               options_.port, " (in use, or not an address of this machine?)");
    port_ = options_.port;
  }
  return port_;
}

void Server::listen() {
  impl_->http.listen_after_bind();
  // httplib joined its workers: every accepted request was answered. Now the scheduler (nothing left, normally).
  scheduler_->stop();
}

void Server::stop() {
  // httplib's own stop() also makes every streaming response in flight stop at its next chunk, so a SIGTERM would cut
  // the streams it must finish. Shutting the listening socket down instead ends the accept loop (httplib then closes
  // it: new connections are refused) while the accepted requests, streams included, run to their end.
  if (impl_->stopped.exchange(true)) return;
  const int fd = impl_->listen_fd.load();
  if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
  else impl_->http.stop();
}

}  // namespace m2sa::serve
