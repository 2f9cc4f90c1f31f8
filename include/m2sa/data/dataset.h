#pragma once
// The interfaces every dataset reader implements, and the bookkeeping for bad entries.
//
// Readers produce m2sa::Sample (m2sa/data/sample.h). They do not decode images (the collate step does); they
// read the image header to check that the file exists and that mask sizes agree with it. Label PNGs (ADE20K,
// COCO-Stuff, Mapillary) and RefCOCOm mask PNGs are decoded because the masks come from them.
//
// Bad data (a missing image, a malformed entry, an RLE whose size disagrees with the image, a `{seg}` count that
// differs from the answer list, ...) throws BadEntry, whose message names the file and the entry. With skip_bad
// the caller (TrainingMix, the evaluator) catches it, counts it in a SkipReport and goes on.
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "m2sa/core/error.h"
#include "m2sa/data/random.h"
#include "m2sa/data/sample.h"

namespace m2sa::data {

class BadEntry : public Error {
 public:
  using Error::Error;
};

template <typename... Args>
[[noreturn]] void bad_entry(Args&&... args) {
  throw BadEntry(m2sa::detail::concat(std::forward<Args>(args)...));
}

// A training sub-dataset (ade20k, refcoco, llava_instruct_150k, MMR_train, ...). Items are images or entries;
// the sampler picks one uniformly and `get` builds a sample from it, drawing the question subset and templates
// from `rng`. Implementations are immutable after construction, so `get` may run on several threads at once.
class TrainDataset {
 public:
  virtual ~TrainDataset() = default;
  virtual const std::string& name() const = 0;
  virtual int64_t size() const = 0;
  // std::nullopt when the item legitimately has nothing to ask about (a label map with only ignored pixels, a
  // PACO image without annotations): the reference then draws again, and so does TrainingMix. Throws BadEntry.
  virtual std::optional<Sample> get(int64_t index, Rng& rng) const = 0;
};

// An evaluation split: item i = one image with all of its questions (ValDataset semantics). Deterministic.
class EvalDataset {
 public:
  virtual ~EvalDataset() = default;
  virtual const std::string& name() const = 0;
  virtual int64_t size() const = 0;
  virtual Sample get(int64_t index) const = 0;  // throws BadEntry
};

// Counts and remembers skipped entries (thread-safe). `summary()` is what `--skip-bad` prints at the end.
class SkipReport {
 public:
  void add(const std::string& dataset, const std::string& message);
  int64_t count() const;
  int64_t count(const std::string& dataset) const;
  // "skipped 3 bad entries (MMR_train: 2, refcoco: 1); first: <message>; ..." (up to `max_messages` messages).
  std::string summary(std::size_t max_messages = 5) const;
  std::vector<std::string> messages() const;

 private:
  mutable std::mutex mutex_;
  std::vector<std::pair<std::string, int64_t>> per_dataset_;
  std::vector<std::string> messages_;
  int64_t total_ = 0;
};

}  // namespace m2sa::data
