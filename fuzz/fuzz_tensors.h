#pragma once
// Loads every tensor of a reader that the fuzzer made and reads its bytes, so that an offset or size the reader
// let through that points outside the file is caught here (a fault, or ASan on heap copies).
#include <ATen/ATen.h>

#include <cstdint>

namespace m2sa::fuzz {

// Small tensors only: the readers allow large shapes backed by large files, and summing them proves nothing more.
inline constexpr int64_t kMaxTouchedBytes = int64_t{1} << 20;

template <typename Reader>
void load_all_tensors(const Reader& reader) {
  for (const auto& info : reader.tensors()) {
    at::Tensor t = reader.load(info.name);
    if (t.numel() == 0 || t.numel() * static_cast<int64_t>(t.element_size()) > kMaxTouchedBytes) continue;
    // Bytes, not values: a float made of random bits may be a signalling NaN; summing bytes reads every one.
    at::Tensor bytes = t.contiguous().reshape({-1}).view(at::kByte);
    (void)bytes.to(at::kLong).sum().item<int64_t>();
  }
}

}  // namespace m2sa::fuzz
