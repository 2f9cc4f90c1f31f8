#include "m2sa/data/image_files.h"

#include <ATen/ATen.h>

#include <array>
#include <cstring>
#include <unordered_map>
#include <fstream>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <sstream>
#include <vector>

#include "m2sa/data/dataset.h"
#include "m2sa/vision/image_io.h"

namespace m2sa::data {

namespace fs = std::filesystem;

namespace {

std::string read_prefix(const fs::path& path, std::size_t limit, const std::string& context, bool* whole) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code ec;
    if (!fs::exists(path, ec)) bad_entry(context, ": image ", path.string(), " does not exist");
    bad_entry(context, ": image ", path.string(), " cannot be opened");
  }
  std::string bytes(limit, '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(limit));
  bytes.resize(static_cast<std::size_t>(in.gcount()));
  *whole = bytes.size() < limit;
  return bytes;
}

std::string read_all(const fs::path& path, const std::string& context) {
  std::ifstream in(path, std::ios::binary);
  if (!in) bad_entry(context, ": cannot open ", path.string());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

uint32_t be32(const std::string& b, std::size_t i) {
  return (uint32_t(uint8_t(b[i])) << 24) | (uint32_t(uint8_t(b[i + 1])) << 16) | (uint32_t(uint8_t(b[i + 2])) << 8) |
         uint32_t(uint8_t(b[i + 3]));
}

}  // namespace

ImageSize probe_image(const fs::path& path, const std::string& context) {
  bool whole = false;
  std::string bytes = read_prefix(path, 64 * 1024, context, &whole);
  if (bytes.empty()) bad_entry(context, ": image ", path.string(), " is empty");
  auto [w, h] = image_header_size(bytes);
  if ((w <= 0 || h <= 0) && !whole) {
    bytes = read_all(path, context);
    std::tie(w, h) = image_header_size(bytes);
  }
  if (w <= 0 || h <= 0) {  // a format the header parser does not know: decode it
    try {
      at::Tensor img = decode_image_rgb(bytes, path.string());
      return {img.size(0), img.size(1)};
    } catch (const std::exception& e) {
      bad_entry(context, ": ", e.what());
    }
  }
  return {h, w};
}

at::Tensor read_label_png(const fs::path& path, const std::string& context) {
  std::ifstream probe(path, std::ios::binary);
  if (!probe) bad_entry(context, ": label map ", path.string(), " does not exist or cannot be opened");
  probe.close();
  const std::string bytes = read_all(path, context);
  const bool png = bytes.size() >= 33 && bytes.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0;
  int color_type = -1, bit_depth = -1;
  std::vector<std::array<uint8_t, 3>> palette;
  if (png) {
    bit_depth = uint8_t(bytes[24]);
    color_type = uint8_t(bytes[25]);
    if (color_type == 3) {  // palette: find PLTE
      std::size_t pos = 8;
      while (pos + 12 <= bytes.size()) {
        const uint32_t len = be32(bytes, pos);
        const std::string type = bytes.substr(pos + 4, 4);
        if (pos + 12 + static_cast<std::size_t>(len) > bytes.size()) break;
        if (type == "PLTE") {
          for (uint32_t i = 0; i + 2 < len; i += 3)
            palette.push_back({uint8_t(bytes[pos + 8 + i]), uint8_t(bytes[pos + 9 + i]), uint8_t(bytes[pos + 10 + i])});
          break;
        }
        if (type == "IDAT" || type == "IEND") break;
        pos += 12 + len;
      }
      if (palette.empty()) bad_entry(context, ": label map ", path.string(), " is a palette PNG without a PLTE chunk");
    }
  }
  cv::Mat raw(1, static_cast<int>(bytes.size()), CV_8UC1, const_cast<char*>(bytes.data()));
  cv::Mat img;
  try {
    img = cv::imdecode(raw, cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception& e) {
    bad_entry(context, ": label map ", path.string(), ": cannot decode: ", e.what());
  }
  if (img.empty()) bad_entry(context, ": label map ", path.string(), " is not a readable image");
  if (img.depth() != CV_8U)
    bad_entry(context, ": label map ", path.string(), " has ", bit_depth > 0 ? std::to_string(bit_depth) : "non-8",
              "-bit samples; expected 8-bit class indices");
  at::Tensor out = at::empty({img.rows, img.cols}, at::kByte);
  uint8_t* dst = out.data_ptr<uint8_t>();
  if (color_type == 3) {
    // OpenCV expands palettes to BGR(A); map colours back to the lowest palette index with that colour.
    if (img.channels() < 3) bad_entry(context, ": label map ", path.string(), ": unexpected decode of a palette PNG");
    std::unordered_map<uint32_t, int> lut;
    for (std::size_t i = palette.size(); i-- > 0;)
      lut[(uint32_t(palette[i][0]) << 16) | (uint32_t(palette[i][1]) << 8) | palette[i][2]] = static_cast<int>(i);
    const int ch = img.channels();
    uint32_t last_key = 0xFFFFFFFFu;
    int last_idx = -1;
    for (int y = 0; y < img.rows; ++y) {
      const uint8_t* row = img.ptr<uint8_t>(y);
      for (int x = 0; x < img.cols; ++x) {
        const uint8_t* px = row + x * ch;
        const uint32_t key = (uint32_t(px[2]) << 16) | (uint32_t(px[1]) << 8) | px[0];
        if (key != last_key) {
          auto it = lut.find(key);
          if (it == lut.end())
            bad_entry(context, ": label map ", path.string(), ": pixel (", y, ", ", x, ") has a colour not in its palette");
          last_key = key;
          last_idx = it->second;
        }
        dst[static_cast<int64_t>(y) * img.cols + x] = static_cast<uint8_t>(last_idx);
      }
    }
    return out;
  }
  if (img.channels() != 1) {
    bad_entry(context, ": label map ", path.string(), " has ", img.channels(),
              " channels; expected a single-channel (gray or palette) label PNG");
  }
  for (int y = 0; y < img.rows; ++y) std::memcpy(dst + static_cast<int64_t>(y) * img.cols, img.ptr<uint8_t>(y), img.cols);
  return out;
}

at::Tensor read_gray_like_cv2(const fs::path& path, const std::string& context) {
  at::Tensor rgb;
  try {
    rgb = read_image_rgb(path);  // cv2.imread (gray and RGBA become 3 channels) + BGR->RGB
  } catch (const std::exception& e) {
    bad_entry(context, ": ", e.what());
  }
  cv::Mat src(static_cast<int>(rgb.size(0)), static_cast<int>(rgb.size(1)), CV_8UC3, rgb.data_ptr<uint8_t>());
  at::Tensor out = at::empty({rgb.size(0), rgb.size(1)}, at::kByte);
  cv::Mat dst(static_cast<int>(rgb.size(0)), static_cast<int>(rgb.size(1)), CV_8UC1, out.data_ptr<uint8_t>());
  cv::cvtColor(src, dst, cv::COLOR_RGB2GRAY);  // same weights as BGR2GRAY on the BGR image
  return out;
}

}  // namespace m2sa::data
