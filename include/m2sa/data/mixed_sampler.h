#pragma once
// The training-mix sampler (HybridDataset.__getitem__, M2SA.md section 3.3): a family is drawn with probability
// proportional to its rate (default 2:9:2:6 over sem_seg, refer_seg, vqa, mmr), then a sub-dataset uniformly inside
// the family, then an item uniformly (with replacement; the reference ignores the index it is given).
//
// Counter-based: draw k of rank r is a pure function of (seed, r, k), computed from its own seeded mt19937_64.
// So every rank has its own deterministic stream, any step can be drawn in any order (workers can prefetch in
// parallel), and the state is just the position: `state()` / `restore()` continue a stream exactly.
// A redraw (the item was empty or bad) keeps the family of the original draw and redraws the sub-dataset and the
// item, as the reference's `self.__getitem__(0)` / `self[0]` inside a family dataset do.
#include <cstdint>
#include <string>
#include <vector>

#include "m2sa/core/json_reader.h"

namespace m2sa::data {

struct SamplerFamily {
  std::string name;
  double rate = 0;
  std::vector<std::string> datasets;  // sub-dataset names (for the state check and messages)
  std::vector<int64_t> sizes;         // items per sub-dataset, each >= 1
};

struct Draw {
  int64_t step = 0;
  int attempt = 0;
  int family = 0;
  int dataset = 0;     // index inside the family
  int64_t item = 0;
  uint64_t seed = 0;   // seed for the sample's own template / subset draws
};

class MixedSampler {
 public:
  MixedSampler(std::vector<SamplerFamily> families, uint64_t seed, int rank = 0);

  // The draw for `step` (attempt 0) or one of its redraws (attempt > 0). Pure and thread-safe.
  Draw draw(int64_t step, int attempt = 0) const;
  // draw(position()) and advance.
  Draw next();
  int64_t position() const { return position_; }

  // {"version": 1, "seed", "rank", "position", "families": [{name, rate, datasets, sizes}]}.
  json state() const;
  // Continues from `state`. Seed, rank and the families (names, rates, sub-datasets and their sizes) must match
  // this sampler, else the stream would differ silently: that is an error saying what differs.
  void restore(const json& state);

  const std::vector<SamplerFamily>& families() const { return families_; }
  std::vector<double> probabilities() const;

 private:
  std::vector<SamplerFamily> families_;
  std::vector<double> cumulative_;
  uint64_t seed_;
  int rank_;
  int64_t position_ = 0;
};

}  // namespace m2sa::data
