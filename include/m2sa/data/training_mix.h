#pragma once
// The training data stream: the configured families and sub-datasets (DataConfig), the MixedSampler, and the
// redraw / skip policy. `sample(step)` is a pure function of (config, seed, rank, step), so data workers can build
// samples for different steps in parallel and a resumed run sees exactly the same samples.
//
// An item with nothing to ask about (the reference redraws: a label map with only ignored pixels, a PACO image
// without annotations) is redrawn inside the same family and counted in `empty_draws()`. A bad entry (BadEntry)
// stops training with an error naming the file and entry, unless skip_bad: then it is counted in `skipped()` and
// redrawn the same way. After max_redraws consecutive failures the step fails with the last error.
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "m2sa/data/data_config.h"
#include "m2sa/data/dataset.h"
#include "m2sa/data/mixed_sampler.h"

namespace m2sa::data {

struct DatasetFamily {
  std::string name;
  double rate = 0;
  std::vector<std::unique_ptr<TrainDataset>> datasets;
};

class TrainingMix {
 public:
  // Opens every dataset of the config (reading annotation files; images are only probed when sampled).
  explicit TrainingMix(const DataConfig& config, int rank = 0);
  // From datasets built elsewhere (tests, custom mixes).
  TrainingMix(std::vector<DatasetFamily> families, uint64_t seed, int rank = 0, bool skip_bad = false,
              int max_redraws = 100);

  Sample sample(int64_t step) const;
  Sample next() { return sample(sampler_.next().step); }

  // Sampler position and check data; see MixedSampler::state.
  json state() const { return sampler_.state(); }
  void restore(const json& state) { sampler_.restore(state); }

  const MixedSampler& sampler() const { return sampler_; }
  const std::vector<DatasetFamily>& families() const { return families_; }
  const SkipReport& skipped() const { return *report_; }  // load-time and sampling-time skips
  int64_t empty_draws() const { return empty_draws_.load(); }
  // One line per family: name, rate, probability, sub-datasets with their sizes.
  std::string describe() const;

 private:
  void init_sampler(uint64_t seed, int rank);

  std::vector<DatasetFamily> families_;
  std::unique_ptr<SkipReport> report_ = std::make_unique<SkipReport>();
  MixedSampler sampler_{{SamplerFamily{"none", 1, {"none"}, {1}}}, 0};
  bool skip_bad_ = false;
  int max_redraws_ = 100;
  mutable std::atomic<int64_t> empty_draws_{0};
};

}  // namespace m2sa::data
