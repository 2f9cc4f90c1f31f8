#pragma once
// Integer arithmetic on sizes that come from files: shapes, strides, offsets and byte counts a reader was handed
// are untrusted, and a wrapped product or a signed overflow (undefined behaviour) turns a bounds check into a
// pass. Each helper returns false instead of overflowing; callers turn that into an m2sa::Error naming the file.
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <vector>

namespace m2sa {

inline bool checked_add(int64_t a, int64_t b, int64_t& out) { return !__builtin_add_overflow(a, b, &out); }
inline bool checked_mul(int64_t a, int64_t b, int64_t& out) { return !__builtin_mul_overflow(a, b, &out); }
inline bool checked_add(uint64_t a, uint64_t b, uint64_t& out) { return !__builtin_add_overflow(a, b, &out); }
inline bool checked_mul(uint64_t a, uint64_t b, uint64_t& out) { return !__builtin_mul_overflow(a, b, &out); }

// numel(shape) * elementSize(dtype) in bytes; false for a negative dimension or when the count overflows
// (the bound is int64: every count must also fit the int64 sizes LibTorch takes).
inline bool checked_nbytes(const std::vector<int64_t>& shape, c10::ScalarType dtype, uint64_t& out) {
  int64_t n = static_cast<int64_t>(c10::elementSize(dtype));
  for (int64_t d : shape)
    if (d < 0 || !checked_mul(n, d, n)) return false;
  out = static_cast<uint64_t>(n);
  return true;
}

}  // namespace m2sa
