#pragma once
// Hand-written masks for the metric tests: one string per row, '1' = foreground, '0' = background,
// 'x' = 255 (ignored). Readable enough to check every expected area by eye.
#include <ATen/ATen.h>

#include <initializer_list>
#include <string>
#include <vector>

namespace m2sa::test {

// uint8 [H, W] from rows of '0' / '1' / 'x'.
inline at::Tensor text_mask(const std::vector<std::string>& rows) {
  const int64_t h = static_cast<int64_t>(rows.size());
  const int64_t w = h > 0 ? static_cast<int64_t>(rows[0].size()) : 0;
  at::Tensor m = at::zeros({h, w}, at::kByte);
  auto a = m.accessor<uint8_t, 2>();
  for (int64_t y = 0; y < h; ++y) {
    if (static_cast<int64_t>(rows[static_cast<size_t>(y)].size()) != w) throw std::runtime_error("ragged text mask");
    for (int64_t x = 0; x < w; ++x) {
      const char c = rows[static_cast<size_t>(y)][static_cast<size_t>(x)];
      if (c != '0' && c != '1' && c != 'x') throw std::runtime_error("bad text mask character");
      a[y][x] = c == '1' ? 1 : c == 'x' ? 255 : 0;
    }
  }
  return m;
}

// uint8 [N, H, W]; N may be 0 (then h, w give the shape).
inline at::Tensor text_masks(const std::vector<std::vector<std::string>>& masks, int64_t h = 0, int64_t w = 0) {
  if (masks.empty()) return at::zeros({0, h, w}, at::kByte);
  std::vector<at::Tensor> list;
  for (const auto& m : masks) list.push_back(text_mask(m));
  return at::stack(list);
}

}  // namespace m2sa::test
