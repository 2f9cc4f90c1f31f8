#include "m2sa/serve/metrics.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

namespace m2sa::serve {

namespace {

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

std::string join_labels(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  return a + "," + b;
}

const std::vector<double> kLatencyBounds = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
const std::vector<double> kBatchBounds = {1, 2, 4, 8, 16, 32, 64};

}  // namespace

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), buckets_(bounds_.size(), 0) {}

void Histogram::observe(double value) {
  for (std::size_t i = 0; i < bounds_.size(); ++i)
    if (value <= bounds_[i]) {
      ++buckets_[i];
      break;
    }
  sum_ += value;
  ++count_;
}

std::string Histogram::render(const std::string& name, const std::string& labels) const {
  std::ostringstream out;
  int64_t cumulative = 0;
  for (std::size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += buckets_[i];
    out << name << "_bucket{" << join_labels(labels, "le=\"" + number(bounds_[i]) + "\"") << "} " << cumulative << "\n";
  }
  out << name << "_bucket{" << join_labels(labels, "le=\"+Inf\"") << "} " << count_ << "\n";
  const std::string braces = labels.empty() ? "" : "{" + labels + "}";
  out << name << "_sum" << braces << " " << number(sum_) << "\n";
  out << name << "_count" << braces << " " << count_ << "\n";
  return out.str();
}

Metrics::Metrics() : batch_sizes_(kBatchBounds) {}

void Metrics::request(const std::string& endpoint, int status, double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++requests_[{endpoint, status}];
  auto it = latency_.find(endpoint);
  if (it == latency_.end()) it = latency_.emplace(endpoint, Histogram(kLatencyBounds)).first;
  it->second.observe(seconds);
}

void Metrics::batch_size(int64_t rows) {
  std::lock_guard<std::mutex> lock(mutex_);
  batch_sizes_.observe(static_cast<double>(rows));
  ++steps_;
}

void Metrics::generated_tokens(int64_t count) {
  std::lock_guard<std::mutex> lock(mutex_);
  generated_ += count;
}

void Metrics::prompt_tokens(int64_t count) {
  std::lock_guard<std::mutex> lock(mutex_);
  prompt_ += count;
}

void Metrics::image_encodings(int64_t clip, int64_t sam) {
  std::lock_guard<std::mutex> lock(mutex_);
  clip_ += clip;
  sam_ += sam;
}

void Metrics::set_queue_depth(int64_t n) {
  std::lock_guard<std::mutex> lock(mutex_);
  queue_depth_ = n;
}

void Metrics::set_running(int64_t n) {
  std::lock_guard<std::mutex> lock(mutex_);
  running_ = n;
}

void Metrics::set_sessions(int64_t n) {
  std::lock_guard<std::mutex> lock(mutex_);
  sessions_ = n;
}

int64_t Metrics::requests(const std::string& endpoint, int status) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = requests_.find({endpoint, status});
  return it == requests_.end() ? 0 : it->second;
}

int64_t Metrics::queue_depth() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_depth_;
}

std::string Metrics::render() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::ostringstream out;
  out << "# HELP m2sa_requests_total HTTP requests answered, by endpoint and status.\n"
         "# TYPE m2sa_requests_total counter\n";
  for (const auto& [key, n] : requests_)
    out << "m2sa_requests_total{endpoint=\"" << key.first << "\",status=\"" << key.second << "\"} " << n << "\n";
  out << "# HELP m2sa_request_duration_seconds Time from arrival to answer, by endpoint.\n"
         "# TYPE m2sa_request_duration_seconds histogram\n";
  for (const auto& [endpoint, h] : latency_)
    out << h.render("m2sa_request_duration_seconds", "endpoint=\"" + endpoint + "\"");
  out << "# HELP m2sa_queue_depth Requests waiting for a place in the decode batch.\n"
         "# TYPE m2sa_queue_depth gauge\nm2sa_queue_depth " << queue_depth_ << "\n";
  out << "# HELP m2sa_running_sequences Sequences in the decode batch.\n"
         "# TYPE m2sa_running_sequences gauge\nm2sa_running_sequences " << running_ << "\n";
  out << "# HELP m2sa_sessions Live sessions.\n# TYPE m2sa_sessions gauge\nm2sa_sessions " << sessions_ << "\n";
  out << "# HELP m2sa_decode_batch_size Sequences per decode step.\n# TYPE m2sa_decode_batch_size histogram\n"
      << batch_sizes_.render("m2sa_decode_batch_size", "");
  out << "# HELP m2sa_generated_tokens_total Tokens generated.\n# TYPE m2sa_generated_tokens_total counter\n"
         "m2sa_generated_tokens_total " << generated_ << "\n";
  out << "# HELP m2sa_prompt_tokens_total Prompt positions prefilled (image tokens included).\n"
         "# TYPE m2sa_prompt_tokens_total counter\nm2sa_prompt_tokens_total " << prompt_ << "\n";
  out << "# HELP m2sa_image_encodings_total Images through an encoder, by encoder.\n"
         "# TYPE m2sa_image_encodings_total counter\n"
         "m2sa_image_encodings_total{encoder=\"clip\"} " << clip_ << "\n"
         "m2sa_image_encodings_total{encoder=\"sam\"} " << sam_ << "\n";
  return out.str();
}

}  // namespace m2sa::serve
