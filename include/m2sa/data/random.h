#pragma once
// Seeded randomness for the data pipeline. Everything draws from an explicit std::mt19937_64 (no global RNG),
// and the distributions are written out here instead of std::uniform_int_distribution & co., whose output
// differs between standard libraries: the same seed gives the same samples with libstdc++ and libc++.
#include <cstdint>
#include <initializer_list>
#include <random>
#include <utility>
#include <vector>

#include "m2sa/core/error.h"

namespace m2sa::data {

using Rng = std::mt19937_64;

// Uniform integer in [0, n), n >= 1 (rejection sampling, no modulo bias).
inline uint64_t uniform_int(Rng& rng, uint64_t n) {
  M2SA_CHECK(n > 0, "uniform_int: empty range");
  const uint64_t threshold = (0 - n) % n;  // 2^64 mod n
  while (true) {
    const uint64_t r = rng();
    if (r >= threshold) return r % n;
  }
}

// Uniform double in [0, 1) with 53 random bits.
inline double uniform01(Rng& rng) { return static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0); }

inline bool coin(Rng& rng, double p_true = 0.5) { return uniform01(rng) < p_true; }

template <typename T>
const T& choice(Rng& rng, const std::vector<T>& items) {
  M2SA_CHECK(!items.empty(), "choice: empty list");
  return items[uniform_int(rng, items.size())];
}

// Fisher-Yates.
template <typename T>
void shuffle(Rng& rng, std::vector<T>& items) {
  for (std::size_t i = items.size(); i > 1; --i) std::swap(items[i - 1], items[uniform_int(rng, i)]);
}

// k distinct indices of [0, n) in random order (numpy's choice(n, k, replace=False)); k <= n.
inline std::vector<int64_t> sample_without_replacement(Rng& rng, int64_t n, int64_t k) {
  M2SA_CHECK(k >= 0 && k <= n, "sample_without_replacement: k=", k, " n=", n);
  std::vector<int64_t> idx(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) idx[static_cast<std::size_t>(i)] = i;
  for (int64_t i = 0; i < k; ++i)  // partial Fisher-Yates from the front
    std::swap(idx[static_cast<std::size_t>(i)], idx[static_cast<std::size_t>(i + static_cast<int64_t>(uniform_int(rng, n - i)))]);
  idx.resize(static_cast<std::size_t>(k));
  return idx;
}

// SplitMix64 finaliser: mixes seed parts into one well-spread 64-bit seed.
inline uint64_t mix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
inline uint64_t seed_of(std::initializer_list<uint64_t> parts) {
  uint64_t h = 0x6A09E667F3BCC909ull;
  for (uint64_t p : parts) h = mix64(h ^ mix64(p));
  return h;
}

}  // namespace m2sa::data
