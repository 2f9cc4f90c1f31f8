#pragma once
// Wall-clock timing for logs and stage tables (steady clock, seconds as double).
#include <chrono>

namespace m2sa {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace m2sa
