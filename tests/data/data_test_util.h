#pragma once
// Helpers for the dataset-reader tests: small image / label files and error capture.
#include <ATen/ATen.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "m2sa/core/error.h"
#include "m2sa/vision/image_io.h"
#include "test_util.h"

namespace m2sa::test {


// A JPEG (or PNG, by extension) of the given size filled with one colour.
inline void write_solid_image(const std::filesystem::path& path, int64_t h, int64_t w, uint8_t value = 120) {
  std::filesystem::create_directories(path.parent_path());
  write_image(path, at::full({h, w, 3}, value, at::kByte));
}

inline void write_text(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out << text;
}

inline void write_json(const std::filesystem::path& path, const nlohmann::json& j) { write_text(path, j.dump()); }

namespace png_detail {
inline uint32_t crc32(const std::string& data) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : data) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return c ^ 0xFFFFFFFFu;
}
inline std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}
inline std::string chunk(const std::string& type, const std::string& data) {
  return be32(static_cast<uint32_t>(data.size())) + type + data + be32(crc32(type + data));
}
}  // namespace png_detail

// An 8-bit palette PNG (colour type 3) written by hand with stored (uncompressed) deflate blocks, so the test
// does not depend on an encoder that can write palettes. `indices`: uint8 [H, W].
inline void write_palette_png(const std::filesystem::path& path, const at::Tensor& indices,
                              const std::vector<std::array<uint8_t, 3>>& palette) {
  using namespace png_detail;
  const int64_t h = indices.size(0), w = indices.size(1);
  std::string raw;
  at::Tensor idx = indices.contiguous();
  for (int64_t y = 0; y < h; ++y) {
    raw += '\0';  // filter type None
    raw.append(reinterpret_cast<const char*>(idx.data_ptr<uint8_t>() + y * w), static_cast<std::size_t>(w));
  }
  std::string z = "\x78\x01";
  std::size_t pos = 0;
  do {
    const std::size_t n = std::min<std::size_t>(65535, raw.size() - pos);
    const bool last = pos + n == raw.size();
    z += static_cast<char>(last ? 1 : 0);
    z += static_cast<char>(n & 0xff);
    z += static_cast<char>(n >> 8);
    z += static_cast<char>(~n & 0xff);
    z += static_cast<char>((~n >> 8) & 0xff);
    z += raw.substr(pos, n);
    pos += n;
  } while (pos < raw.size());
  uint32_t a = 1, b = 0;
  for (unsigned char c : raw) {
    a = (a + c) % 65521;
    b = (b + a) % 65521;
  }
  z += be32((b << 16) | a);
  std::string ihdr = be32(static_cast<uint32_t>(w)) + be32(static_cast<uint32_t>(h));
  ihdr += std::string("\x08\x03\x00\x00\x00", 5);
  std::string plte;
  for (const auto& c : palette) plte.append(reinterpret_cast<const char*>(c.data()), 3);
  write_text(path, std::string("\x89PNG\r\n\x1a\n", 8) + chunk("IHDR", ihdr) + chunk("PLTE", plte) + chunk("IDAT", z) +
                       chunk("IEND", ""));
}

}  // namespace m2sa::test
