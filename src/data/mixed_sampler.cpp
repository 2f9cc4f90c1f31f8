#include "m2sa/data/mixed_sampler.h"

#include <cmath>

#include "m2sa/data/random.h"

namespace m2sa::data {

MixedSampler::MixedSampler(std::vector<SamplerFamily> families, uint64_t seed, int rank)
    : families_(std::move(families)), seed_(seed), rank_(rank) {
  M2SA_CHECK(!families_.empty(), "MixedSampler: no dataset families");
  M2SA_CHECK(rank >= 0, "MixedSampler: rank ", rank, " is negative");
  double total = 0;
  for (const auto& f : families_) {
    M2SA_CHECK(std::isfinite(f.rate) && f.rate >= 0, "MixedSampler: family ", f.name, " has rate ", f.rate);
    M2SA_CHECK(!f.sizes.empty(), "MixedSampler: family ", f.name, " has no datasets");
    M2SA_CHECK(f.datasets.empty() || f.datasets.size() == f.sizes.size(), "MixedSampler: family ", f.name,
               ": ", f.datasets.size(), " names for ", f.sizes.size(), " datasets");
    for (std::size_t i = 0; i < f.sizes.size(); ++i)
      M2SA_CHECK(f.sizes[i] >= 1, "MixedSampler: family ", f.name, ": dataset ",
                 f.datasets.empty() ? std::to_string(i) : f.datasets[i], " is empty");
    total += f.rate;
  }
  M2SA_CHECK(total > 0, "MixedSampler: all rates are zero");
  double acc = 0;
  for (const auto& f : families_) {
    acc += f.rate / total;
    cumulative_.push_back(acc);
  }
  cumulative_.back() = 1.0;
}

std::vector<double> MixedSampler::probabilities() const {
  std::vector<double> p;
  double prev = 0;
  for (double c : cumulative_) {
    p.push_back(c - prev);
    prev = c;
  }
  return p;
}

Draw MixedSampler::draw(int64_t step, int attempt) const {
  M2SA_CHECK(step >= 0 && attempt >= 0, "MixedSampler::draw: negative step or attempt");
  Draw d;
  d.step = step;
  d.attempt = attempt;
  {
    // The family comes from a hash of (seed, rank, step) alone, so redraws (attempt > 0) keep it.
    const uint64_t h = seed_of({seed_, static_cast<uint64_t>(rank_), static_cast<uint64_t>(step), 0x66616D696C79ull});
    const double u = static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0);
    d.family = 0;
    while (d.family + 1 < static_cast<int>(cumulative_.size()) && u >= cumulative_[static_cast<std::size_t>(d.family)])
      ++d.family;
    // A zero-rate family can only be hit through floating-point edge cases; skip it.
    while (families_[static_cast<std::size_t>(d.family)].rate == 0 && d.family > 0) --d.family;
  }
  Rng rng(seed_of({seed_, static_cast<uint64_t>(rank_), static_cast<uint64_t>(step), static_cast<uint64_t>(attempt) + 1}));
  const SamplerFamily& f = families_[static_cast<std::size_t>(d.family)];
  d.dataset = static_cast<int>(uniform_int(rng, f.sizes.size()));
  d.item = static_cast<int64_t>(uniform_int(rng, static_cast<uint64_t>(f.sizes[static_cast<std::size_t>(d.dataset)])));
  d.seed = rng();
  return d;
}

Draw MixedSampler::next() { return draw(position_++); }

json MixedSampler::state() const {
  json fams = json::array();
  for (const auto& f : families_)
    fams.push_back({{"name", f.name}, {"rate", f.rate}, {"datasets", f.datasets}, {"sizes", f.sizes}});
  return {{"version", 1}, {"seed", seed_}, {"rank", rank_}, {"position", position_}, {"families", fams}};
}

void MixedSampler::restore(const json& s) {
  auto need = [&](const char* key) -> const json& {
    if (!s.is_object() || !s.contains(key)) fail("sampler state: missing \"", key, "\"");
    return s[key];
  };
  if (need("version") != 1) fail("sampler state: version ", need("version").dump(), " is not supported (expected 1)");
  if (json_uint(need("seed"), "sampler state: seed") != seed_)
    fail("sampler state: it was saved with seed ", need("seed").dump(), " but this run uses seed ", seed_);
  if (json_int(need("rank"), "sampler state: rank") != rank_)
    fail("sampler state: it was saved by rank ", need("rank").dump(), " but is restored on rank ", rank_);
  const json current = state()["families"];
  if (need("families") != current)
    fail("sampler state: the dataset mix changed since it was saved (saved ", need("families").dump(), ", now ",
         current.dump(), "); resuming would not continue the same stream");
  const int64_t pos = json_int(need("position"), "sampler state: position");
  if (pos < 0) fail("sampler state: negative position ", pos);
  position_ = pos;
}

}  // namespace m2sa::data
