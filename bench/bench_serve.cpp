// `m2sa serve` throughput and latency: requests per second and p50 / p99 latency at concurrency 1, 4 and 16 (clients
// that each send their next request when the previous one is answered), through HTTP on loopback, against the same
// server in the same process; then the same questions through sequential `m2sa infer` processes (what a script
// calling the CLI per image pays: process start, model load, one answer). Goal (docs/SERVE.md): at concurrency 16,
// at least 3x the throughput of one-at-a-time serving (concurrency 1), with p99 under 2x p50.
//
// The tiny config (configs/tiny.json) with random weights on the CPU in fp32: every answer runs to --new tokens (the
// end token of a random model is as unlikely as any other), a fresh random image per request (each one through
// preprocessing, CLIP and a prefill, as real traffic). Physical limit beside the speedup: perfect batching gives at
// most the concurrency (c requests in the time of one).
// Usage: build/bench/bench_serve [--requests N (48)] [--new N (32)] [--infer-runs N (4)] [--max-batch N (16)]
//                                [--m2sa PATH (build/m2sa)]
#include <ATen/ATen.h>
#include <httplib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "m2sa/core/base64.h"
#include "m2sa/core/error.h"
#include "m2sa/core/json_reader.h"
#include "m2sa/core/runtime.h"
#include "m2sa/infer/model_export.h"
#include "m2sa/infer/predictor.h"
#include "m2sa/models/m2sa/m2sa_config.h"
#include "m2sa/serve/server.h"
#include "m2sa/text/tokenizer.h"
#include "m2sa/vision/image_io.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

const char* arg_value(int argc, char** argv, const char* name) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  return nullptr;
}

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(pos);
  const std::size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

const std::string kQuestion = "What would I hold to lift it? Please output segmentation mask.";

struct Row {
  int concurrency = 0;
  int requests = 0;
  double seconds = 0, rps = 0, p50 = 0, p99 = 0, tokens_per_s = 0;
};

Row run_level(int port, int concurrency, int requests, const std::vector<std::string>& bodies) {
  std::vector<double> latency(static_cast<std::size_t>(requests), 0.0);
  std::atomic<int> next{0}, failed{0};
  std::atomic<int64_t> tokens{0};
  const auto t0 = Clock::now();
  std::vector<std::thread> clients;
  for (int c = 0; c < concurrency; ++c) {
    clients.emplace_back([&] {
      httplib::Client cli("127.0.0.1", port);
      cli.set_read_timeout(600, 0);
      for (int i = next++; i < requests; i = next++) {
        const auto t = Clock::now();
        auto r = cli.Post("/v1/segment", bodies[static_cast<std::size_t>(i) % bodies.size()], "application/json");
        latency[static_cast<std::size_t>(i)] = seconds_since(t);
        if (!r || r->status != 200) {
          ++failed;
          continue;
        }
        tokens += m2sa::json::parse(r->body)["timings"]["new_tokens"].get<int64_t>();
      }
    });
  }
  for (auto& t : clients) t.join();
  Row row;
  row.concurrency = concurrency;
  row.requests = requests;
  row.seconds = seconds_since(t0);
  M2SA_CHECK(failed == 0, "bench_serve: ", failed.load(), " request(s) failed at concurrency ", concurrency);
  row.rps = requests / row.seconds;
  row.p50 = percentile(latency, 0.5);
  row.p99 = percentile(latency, 0.99);
  row.tokens_per_s = static_cast<double>(tokens.load()) / row.seconds;
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  m2sa::reexec_with_malloc_tunables(argc, argv);
  try {
    const m2sa::RuntimeInfo rt = m2sa::init_runtime();
    const int requests = arg_value(argc, argv, "--requests") ? std::atoi(arg_value(argc, argv, "--requests")) : 48;
    const int64_t new_tokens = arg_value(argc, argv, "--new") ? std::atoll(arg_value(argc, argv, "--new")) : 32;
    const int infer_runs = arg_value(argc, argv, "--infer-runs") ? std::atoi(arg_value(argc, argv, "--infer-runs")) : 4;
    const int64_t max_batch = arg_value(argc, argv, "--max-batch") ? std::atoll(arg_value(argc, argv, "--max-batch")) : 16;
    const fs::path exe_dir = fs::canonical("/proc/self/exe").parent_path();
    const std::string m2sa_cli = arg_value(argc, argv, "--m2sa") ? arg_value(argc, argv, "--m2sa")
                                                                 : (exe_dir.parent_path() / "m2sa").string();
    M2SA_CHECK(requests >= 16 && new_tokens >= 1 && infer_runs >= 0 && max_batch >= 1, "bench_serve: bad arguments");
    const std::string root = M2SA_SOURCE_DIR;
    std::printf("bench_serve: %d thread(s), malloc hugetlb %s; tiny config, random weights, fp32 on the CPU; %lld new "
                "tokens per answer\n",
                rt.threads, rt.hugetlb_malloc ? "on" : "off", static_cast<long long>(new_tokens));

    at::manual_seed(3);
    m2sa::m2sa_model::M2SAForCausalLM model(m2sa::m2sa_model::read_model_config(root + "/configs/tiny.json"));
    model->eval();
    const m2sa::infer::Predictor predictor(model, m2sa::Tokenizer::load(root + "/configs/tokenizer/tokenizer.model"));

    // Request bodies: a fresh random 240x320 image each.
    std::vector<std::string> bodies;
    std::vector<at::Tensor> images;
    for (int i = 0; i < 16; ++i) {
      images.push_back(at::randint(0, 256, {240, 320, 3}).to(at::kByte));
      bodies.push_back(m2sa::json{{"image", m2sa::base64_encode(m2sa::encode_image(images.back(), ".png"))},
                                  {"question", kQuestion},
                                  {"max_new_tokens", new_tokens}}
                           .dump());
    }

    m2sa::serve::ServerOptions so;
    so.host = "127.0.0.1";
    so.port = 0;
    so.limits.max_batch = max_batch;
    so.limits.max_queue = 64;
    so.model_name = "tiny-random";
    m2sa::serve::Server server(predictor, so);
    const int port = server.bind();
    std::thread listener([&] { server.listen(); });
    (void)run_level(port, 2, 4, bodies);  // warm-up (first allocations, thread pools)

    std::vector<Row> rows;
    for (int c : {1, 4, 16}) {
      const int n = c == 1 ? std::max(16, requests / 3) : requests;
      rows.push_back(run_level(port, c, n, bodies));
    }
    server.stop();
    listener.join();

    std::printf("\n| concurrency | requests | req/s | speedup vs 1 (limit) | p50 s | p99 s | p99/p50 | tokens/s |\n"
                "|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (const Row& r : rows)
      std::printf("| %d | %d | %.2f | %.2fx (%dx) | %.3f | %.3f | %.2f | %.0f |\n", r.concurrency, r.requests, r.rps,
                  r.rps / rows[0].rps, r.concurrency, r.p50, r.p99, r.p99 / r.p50, r.tokens_per_s);

    if (infer_runs > 0) {
      // The same questions through one `m2sa infer` process each, one after the other.
      const fs::path dir = fs::temp_directory_path() / ("m2sa_bench_serve_" + std::to_string(::getpid()));
      fs::create_directories(dir);
      m2sa::infer::ExportOptions eo;
      eo.dtype = at::kFloat;
      m2sa::infer::export_model(*predictor.model(), predictor.tokenizer(), dir / "model", eo);
      std::vector<double> lat;
      const auto t0 = Clock::now();
      for (int i = 0; i < infer_runs; ++i) {
        const fs::path img = dir / ("img" + std::to_string(i) + ".png");
        m2sa::write_image(img, images[static_cast<std::size_t>(i) % images.size()]);
        const std::string cmd = "'" + m2sa_cli + "' infer --model '" + (dir / "model").string() +
                                "' --precision fp32 --allow-no-seg --max-new-tokens " + std::to_string(new_tokens) +
                                " '" + img.string() + "' '" + kQuestion + "' > /dev/null 2>&1";
        const auto t = Clock::now();
        M2SA_CHECK(std::system(cmd.c_str()) == 0, "bench_serve: failed: ", cmd);
        lat.push_back(seconds_since(t));
      }
      const double total = seconds_since(t0);
      fs::remove_all(dir);
      const double rps = infer_runs / total;
      std::printf("| `m2sa infer` processes, one after another | %d | %.2f | %.2fx | %.3f | %.3f | %.2f | |\n",
                  infer_runs, rps, rps / rows[0].rps, percentile(lat, 0.5), percentile(lat, 0.99),
                  percentile(lat, 0.99) / percentile(lat, 0.5));
      std::printf("\nserve at concurrency 16 vs sequential `m2sa infer` processes: %.1fx the throughput\n",
                  rows.back().rps / rps);
    }
    const Row& top = rows.back();
    std::printf("goal: concurrency 16 >= 3x concurrency 1 (%.2fx: %s), p99 < 2x p50 (%.2f: %s)\n", top.rps / rows[0].rps,
                top.rps / rows[0].rps >= 3 ? "met" : "NOT met", top.p99 / top.p50, top.p99 < 2 * top.p50 ? "met" : "NOT met");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_serve: %s\n", e.what());
    return 1;
  }
}
