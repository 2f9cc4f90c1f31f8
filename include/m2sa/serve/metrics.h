#pragma once
// The server's counters in the Prometheus text format (GET /metrics): requests by endpoint and status, queue depth,
// running sequences, decode batch sizes, latency histograms, generated tokens, sessions. Thread-safe.
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace m2sa::serve {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double value);
  // Lines "name_bucket{labels,le="..."} n", name_sum, name_count; `labels` like `endpoint="segment"` or "".
  std::string render(const std::string& name, const std::string& labels) const;
  int64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<int64_t> buckets_;  // cumulative on render
  double sum_ = 0;
  int64_t count_ = 0;
};

class Metrics {
 public:
  Metrics();
  void request(const std::string& endpoint, int status, double seconds);
  void batch_size(int64_t rows);            // one decode step with this many sequences
  void generated_tokens(int64_t count);
  void prompt_tokens(int64_t count);
  void image_encodings(int64_t clip, int64_t sam);
  void set_queue_depth(int64_t n);
  void set_running(int64_t n);
  void set_sessions(int64_t n);
  int64_t requests(const std::string& endpoint, int status) const;
  int64_t queue_depth() const;
  std::string render() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, int64_t> requests_;
  std::map<std::string, Histogram> latency_;
  Histogram batch_sizes_;
  int64_t generated_ = 0, prompt_ = 0, clip_ = 0, sam_ = 0, steps_ = 0;
  int64_t queue_depth_ = 0, running_ = 0, sessions_ = 0;
};

}  // namespace m2sa::serve
