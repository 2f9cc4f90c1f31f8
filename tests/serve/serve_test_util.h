#pragma once
// Helpers of the server tests: images as request bytes, crafted bad images.
#include <ATen/ATen.h>

#include <cstdint>
#include <string>

#include "infer/infer_test_util.h"
#include "m2sa/core/base64.h"
#include "m2sa/vision/image_io.h"

namespace m2sa::test {

inline std::string png_bytes(const at::Tensor& rgb) { return encode_image(rgb, ".png"); }
inline std::string png_base64(const at::Tensor& rgb) { return base64_encode(png_bytes(rgb)); }
inline std::string png_data_uri(const at::Tensor& rgb) { return "data:image/png;base64," + png_base64(rgb); }

// A PNG signature and IHDR chunk claiming w x h pixels, then nothing (a header-only bomb).
inline std::string png_header_only(uint32_t w, uint32_t h) {
  std::string s("\x89PNG\r\n\x1a\n", 8);
  auto be32 = [&](uint32_t v) {
    for (int k = 3; k >= 0; --k) s.push_back(static_cast<char>((v >> (8 * k)) & 0xFF));
  };
  be32(13);
  s += "IHDR";
  be32(w);
  be32(h);
  s += std::string("\x08\x02\x00\x00\x00", 5);
  be32(0);  // CRC (not checked before the size)
  return s;
}

}  // namespace m2sa::test
