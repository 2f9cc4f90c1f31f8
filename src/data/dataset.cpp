#include "m2sa/data/dataset.h"

namespace m2sa::data {

namespace {
constexpr std::size_t kKeptMessages = 100;
}

void SkipReport::add(const std::string& dataset, const std::string& message) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++total_;
  bool found = false;
  for (auto& [name, n] : per_dataset_)
    if (name == dataset) {
      ++n;
      found = true;
    }
  if (!found) per_dataset_.emplace_back(dataset, 1);
  if (messages_.size() < kKeptMessages) messages_.push_back(message);
}

int64_t SkipReport::count() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return total_;
}

int64_t SkipReport::count(const std::string& dataset) const {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& [name, n] : per_dataset_)
    if (name == dataset) return n;
  return 0;
}

std::vector<std::string> SkipReport::messages() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return messages_;
}

std::string SkipReport::summary(std::size_t max_messages) const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (total_ == 0) return "skipped 0 bad entries";
  std::string out = "skipped " + std::to_string(total_) + " bad entr" + (total_ == 1 ? "y" : "ies") + " (";
  for (std::size_t i = 0; i < per_dataset_.size(); ++i)
    out += (i ? ", " : "") + per_dataset_[i].first + ": " + std::to_string(per_dataset_[i].second);
  out += ")";
  for (std::size_t i = 0; i < messages_.size() && i < max_messages; ++i) out += (i ? "\n  " : "; first:\n  ") + messages_[i];
  if (messages_.size() > max_messages) out += "\n  ...";
  return out;
}

}  // namespace m2sa::data
