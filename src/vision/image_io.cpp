#include "m2sa/vision/image_io.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <fstream>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <sstream>
#include <vector>

#include <spdlog/spdlog.h>

#include "m2sa/core/atomic_file.h"
#include "m2sa/core/error.h"

namespace m2sa {

namespace {

uint32_t be16(const std::string& b, std::size_t i) {
  return (static_cast<uint8_t>(b[i]) << 8) | static_cast<uint8_t>(b[i + 1]);
}
uint32_t be32(const std::string& b, std::size_t i) { return (be16(b, i) << 16) | be16(b, i + 2); }
uint32_t le16(const std::string& b, std::size_t i) {
  return static_cast<uint8_t>(b[i]) | (static_cast<uint8_t>(b[i + 1]) << 8);
}

bool is_jpeg(const std::string& b) {
  return b.size() >= 3 && static_cast<uint8_t>(b[0]) == 0xFF && static_cast<uint8_t>(b[1]) == 0xD8 &&
         static_cast<uint8_t>(b[2]) == 0xFF;
}
bool is_png(const std::string& b) { return b.size() >= 8 && b.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0; }

// The first bytes of a file, for the error naming a format m2sa does not read.
std::string leading_bytes_hex(const std::string& b) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < std::min<std::size_t>(b.size(), 8); ++i) {
    if (i) out += ' ';
    out += digits[static_cast<uint8_t>(b[i]) >> 4];
    out += digits[static_cast<uint8_t>(b[i]) & 15];
  }
  return out;
}

// The EXIF orientation (1..8) of a JPEG APP1 segment's payload (starting at "Exif\0\0"), 1 when absent or unreadable:
// IFD0 tag 0x0112, as OpenCV's ExifReader reads it.
int exif_orientation(const std::string& b, std::size_t begin, std::size_t end) {
  if (end > b.size() || end < begin + 14 || b.compare(begin, 6, std::string("Exif\0\0", 6)) != 0) return 1;
  const std::size_t tiff = begin + 6;
  const bool little = b.compare(tiff, 2, "II") == 0;
  if (!little && b.compare(tiff, 2, "MM") != 0) return 1;
  auto u16 = [&](std::size_t i) { return little ? le16(b, i) : be16(b, i); };
  auto u32 = [&](std::size_t i) {
    return little ? (le16(b, i) | (le16(b, i + 2) << 16)) : be32(b, i);
  };
  const std::size_t ifd = tiff + u32(tiff + 4);
  if (ifd < tiff + 8 || ifd + 2 > end) return 1;
  const std::size_t n = u16(ifd);
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t e = ifd + 2 + 12 * k;
    if (e + 12 > end) return 1;
    if (u16(e) == 0x0112) {
      const uint32_t v = u16(e + 8);
      return v >= 1 && v <= 8 ? static_cast<int>(v) : 1;
    }
  }
  return 1;
}

}  // namespace

std::pair<int64_t, int64_t> image_header_size(const std::string& b) {
  if (b.size() >= 24 && b.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0) return {be32(b, 16), be32(b, 20)};
  if (b.size() >= 10 && (b.compare(0, 6, "GIF87a") == 0 || b.compare(0, 6, "GIF89a") == 0))
    return {le16(b, 6), le16(b, 8)};
  if (b.size() >= 26 && b.compare(0, 2, "BM") == 0) {
    auto le32 = [&](std::size_t i) { return static_cast<int32_t>(le16(b, i) | (le16(b, i + 2) << 16)); };
    return {std::abs(le32(18)), std::abs(le32(22))};
  }
  if (is_jpeg(b)) {
    std::size_t i = 2;
    int orientation = 1;
    while (i + 9 < b.size()) {
      if (static_cast<uint8_t>(b[i]) != 0xFF) return {0, 0};
      uint8_t marker = static_cast<uint8_t>(b[i + 1]);
      if (marker == 0xFF) {
        ++i;
        continue;
      }
      const bool sof = (marker >= 0xC0 && marker <= 0xCF) && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
      if (sof) {
        // cv2.imread (IMREAD_COLOR) turns the image by its EXIF orientation; 5..8 swap width and height.
        if (orientation >= 5) return {be16(b, i + 5), be16(b, i + 7)};
        return {be16(b, i + 7), be16(b, i + 5)};
      }
      if (marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7)) {
        i += 2;
        continue;
      }
      if (marker == 0xE1 && orientation == 1) orientation = exif_orientation(b, i + 4, i + 2 + be16(b, i + 2));
      i += 2 + be16(b, i + 2);
    }
  }
  return {0, 0};
}

at::Tensor decode_image_rgb(const std::string& bytes, const std::string& name, const ImageLimits& limits) {
  if (bytes.empty()) fail(name, ": empty file, expected an image");
  // cv::imdecode would hand anything else to whichever of OpenCV's codecs claims it (BMP, TIFF, WebP, OpenEXR,
  // ...): only the formats m2sa documents reach a decoder.
  if (!is_jpeg(bytes) && !is_png(bytes))
    fail(name, ": not a readable image: m2sa reads JPEG and PNG files only (the file starts with ",
         leading_bytes_hex(bytes), ")");
  auto [w, h] = image_header_size(bytes);
  // w and h come from the header (up to 2^32 each): compare without forming a product that can overflow.
  if (w > 0 && h > 0 && w > limits.max_pixels / h)
    fail(name, ": image is ", w, "x", h, " pixels, above the limit of ", limits.max_pixels, " pixels");
  const std::string* data = &bytes;
  std::string with_eoi;
  if (is_jpeg(bytes)) {
    // cv2.imread reads files through libjpeg's stdio source, which ends a file without an end-of-image marker
    // with a fake one (a warning; missing scan data becomes gray), so the reference accepts such JPEGs (COCO has
    // some). cv::imdecode's memory source does not: give it the marker the stdio source would have inserted.
    const std::size_t end = bytes.find_last_not_of('\0');
    if (end == std::string::npos || end < 1 || static_cast<uint8_t>(bytes[end - 1]) != 0xFF ||
        static_cast<uint8_t>(bytes[end]) != 0xD9) {
      spdlog::warn("{}: JPEG without an end-of-image marker (truncated?); decoded as cv2.imread does", name);
      with_eoi = bytes + std::string("\xFF\xD9", 2);
      data = &with_eoi;
    }
  }
  cv::Mat raw(1, static_cast<int>(data->size()), CV_8UC1, const_cast<char*>(data->data()));
  cv::Mat bgr;
  try {
    bgr = cv::imdecode(raw, cv::IMREAD_COLOR);
  } catch (const cv::Exception& e) {
    fail(name, ": cannot decode image: ", e.what());
  }
  if (bgr.empty()) fail(name, ": not a readable image (unknown format or corrupt data)");
  if (bgr.rows == 0 || bgr.cols == 0) fail(name, ": image has no pixels");
  if (static_cast<int64_t>(bgr.rows) * bgr.cols > limits.max_pixels)
    fail(name, ": image is ", bgr.cols, "x", bgr.rows, " pixels, above the limit of ", limits.max_pixels);
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  at::Tensor out = at::empty({rgb.rows, rgb.cols, 3}, at::kByte);
  cv::Mat dst(rgb.rows, rgb.cols, CV_8UC3, out.data_ptr<uint8_t>());
  rgb.copyTo(dst);
  return out;
}

at::Tensor read_image_rgb(const std::filesystem::path& path, const ImageLimits& limits) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path.string(), ": cannot open image file");
  std::ostringstream s;
  s << in.rdbuf();
  return decode_image_rgb(s.str(), path.string(), limits);
}

std::string encode_image(const at::Tensor& image, const std::string& ext) {
  M2SA_CHECK(image.scalar_type() == at::kByte && (image.dim() == 2 || (image.dim() == 3 && image.size(2) == 3)),
             "encode_image expects uint8 [H, W] or [H, W, 3], got ", image.scalar_type(), " ", image.sizes());
  at::Tensor img = image.contiguous().cpu();
  cv::Mat m;
  if (img.dim() == 2) {
    m = cv::Mat(static_cast<int>(img.size(0)), static_cast<int>(img.size(1)), CV_8UC1, img.data_ptr<uint8_t>());
  } else {
    cv::Mat rgb(static_cast<int>(img.size(0)), static_cast<int>(img.size(1)), CV_8UC3, img.data_ptr<uint8_t>());
    cv::cvtColor(rgb, m, cv::COLOR_RGB2BGR);
  }
  std::vector<uchar> buf;
  if (!cv::imencode(ext, m, buf)) fail("cannot encode an image as ", ext);
  return std::string(reinterpret_cast<const char*>(buf.data()), buf.size());
}

void write_image(const std::filesystem::path& path, const at::Tensor& image) {
  const std::string ext = path.extension().empty() ? ".png" : path.extension().string();
  write_file_atomic(path, with_context(path.string(), [&] { return encode_image(image, ext); }));
}

}  // namespace m2sa
