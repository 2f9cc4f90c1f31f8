// m2sa serve (--model DIR | the other model-source flags of infer) [--host 127.0.0.1] [--port 8080] [--device cpu]
//            [--precision bf16] [--max-batch N] [--max-queue Q] [--timeout S] [limits ...]
// Loads the model once and answers over HTTP (docs/SERVE.md): POST /v1/segment, sessions, OpenAI chat completions,
// /health, /v1/models, /metrics and the web page at /. SIGTERM or SIGINT: stop accepting connections, answer the
// requests in flight, exit 0 (a second signal ends the process at once).
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <memory>
#include <thread>

#include "command.h"
#include "model_source_options.h"
#include "m2sa/core/dtype.h"
#include "m2sa/core/error.h"
#include "m2sa/core/stop_request.h"
#include "m2sa/infer/device.h"
#include "m2sa/infer/model_loading.h"
#include "m2sa/infer/predictor.h"
#include "m2sa/serve/server.h"

namespace m2sa::cli {
namespace {

struct ServeArgs {
  ModelSourceArgs model;
  std::string host = "127.0.0.1", precision = "bf16", device = "cpu", model_name;
  int port = 8080, threads = 0;
  serve::ServeLimits limits;
};

int run_serve(ServeArgs a) {
  a.model.check_paths_exist();
  const c10::ScalarType dtype = parse_precision(a.precision);
  const c10::Device device = infer::parse_device(a.device);
  infer::check_precision(dtype, device);
  M2SA_CHECK(a.port >= 0 && a.port <= 65535, "--port must be in [0, 65535], got ", a.port);
  install_stop_handlers("\nm2sa serve: stop requested; answering the requests in flight (a second signal ends at once)\n");
  infer::LoadModelOptions lo;
  lo.dtype = dtype;
  lo.device = device;
  lo.eval = true;
  lo.attention = a.model.attention_mode();
  const auto t0 = std::chrono::steady_clock::now();
  infer::LoadedModel loaded = infer::load_model(a.model.source(), lo);
  for (const auto& line : loaded.log) spdlog::info("{}", line);
  const infer::Predictor predictor(loaded.model, loaded.tokenizer);
  spdlog::info("model loaded in {:.1f} s ({}, {})",
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), precision_name(dtype),
               infer::device_name(device));

  serve::ServerOptions so;
  so.host = a.host;
  so.port = a.port;
  so.limits = a.limits;
  so.threads = a.threads;
  std::string name = a.model_name;
  if (name.empty() && !a.model.model.empty())
    name = std::filesystem::path(a.model.model).lexically_normal().filename().string();
  if (name.empty() && !a.model.model.empty())
    name = std::filesystem::path(a.model.model).lexically_normal().parent_path().filename().string();
  so.model_name = name.empty() ? "m2sa" : name;
  so.model_info = json{{"precision", precision_name(dtype)},
                       {"device", infer::device_name(device)},
                       {"config", predictor.model()->config().to_json()},
                       {"limits",
                        {{"max_batch", a.limits.max_batch}, {"max_queue", a.limits.max_queue},
                         {"timeout_s", a.limits.timeout_s}, {"max_body_bytes", a.limits.max_body_bytes},
                         {"max_image_pixels", a.limits.max_image_pixels}, {"max_question_bytes", a.limits.max_question_bytes},
                         {"max_new_tokens", a.limits.max_new_tokens_limit}}}};
  serve::Server server(predictor, so);
  const int port = server.bind();
  std::cout << "m2sa serve: listening on http://" << a.host << ":" << port << " (model " << so.model_name << ", "
            << precision_name(dtype) << " on " << infer::device_name(device) << ", max batch " << a.limits.max_batch
            << ", max queue " << a.limits.max_queue << ")" << std::endl;
  // SIGTERM / SIGINT: stop accepting; listen() returns once the requests in flight are answered.
  std::atomic<bool> done{false};
  std::thread watcher([&] {
    bool announced = false;
    while (!done.load()) {
      if (stop_requested()) {
        if (!announced) {
          spdlog::info("serve: signal {} received: no new connections; finishing the requests in flight",
                       stop_signal());
          announced = true;
        }
        server.stop();  // repeated until listen() returns (a stop before the listening loop started is a no-op)
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  server.listen();
  done = true;
  watcher.join();
  std::cout << "m2sa serve: stopped" << (stop_requested() ? " on signal" : "") << "; every request in flight was answered"
            << std::endl;
  return 0;
}

Registrar register_serve({"serve", "Serve the model over HTTP: segmentation, sessions, OpenAI chat completions, a web page",
                          [](CLI::App& app) {
                            auto a = std::make_shared<ServeArgs>();
                            add_model_source_options(app, a->model);
                            serve::ServeLimits& L = a->limits;
                            app.add_option("--host", a->host, "address to listen on (default 127.0.0.1)");
                            app.add_option("--port", a->port, "port (default 8080; 0: any free port, printed)");
                            app.add_option("--precision", a->precision, "bf16 (default), fp32, fp16 (CUDA only)");
                            app.add_option("--device", a->device, "cpu (default), cuda or cuda:N");
                            app.add_option("--model-name", a->model_name, "name in /v1/models and chat completions "
                                                                          "(default: the --model folder's name)");
                            app.add_option("--max-batch", L.max_batch, "sequences decoded together (default 16)");
                            app.add_option("--max-queue", L.max_queue, "requests that may wait for a place in the batch; "
                                                                       "beyond: 503 (default 64)");
                            app.add_option("--timeout", L.timeout_s, "seconds per request, arrival to answer; beyond: "
                                                                     "504 (default 300)");
                            app.add_option("--max-body-bytes", L.max_body_bytes, "largest request body (default 32 MiB)");
                            app.add_option("--max-image-bytes", L.max_image_bytes, "largest image file (default 24 MiB)");
                            app.add_option("--max-image-pixels", L.max_image_pixels, "largest width x height (default 40 M)");
                            app.add_option("--max-image-side", L.max_image_side, "largest width or height (default 16384)");
                            app.add_option("--max-question-bytes", L.max_question_bytes, "longest question (default 4000)");
                            app.add_option("--max-new-tokens", L.default_max_new_tokens, "tokens to generate when a "
                                                                                         "request says nothing (default 512)");
                            app.add_option("--max-new-tokens-limit", L.max_new_tokens_limit, "the most a request may ask "
                                                                                             "for (default 2048)");
                            app.add_option("--max-sessions", L.max_sessions, "live sessions (default 64; the least "
                                                                             "recently used is dropped beyond)");
                            app.add_option("--session-ttl", L.session_ttl_s, "seconds an unused session lives (default 1800)");
                            app.add_option("--threads", a->threads, "HTTP worker threads (default max-batch + max-queue "
                                                                    "+ 8, at most 256)");
                            return [a]() -> int { return run_serve(*a); };
                          }});

}  // namespace
}  // namespace m2sa::cli
