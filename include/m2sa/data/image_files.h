#pragma once
// Image-file helpers for the readers: header probing (existence + size without decoding) and label maps.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <string>

namespace m2sa::data {

struct ImageSize {
  int64_t height = 0;
  int64_t width = 0;
};

// Size of an image file from its header (reads the first 64 KiB, the whole file only when the header is further
// in, and decodes only for formats image_header_size does not know). Throws BadEntry "<context>: image <path>:
// ..." when the file is missing or is not an image.
ImageSize probe_image(const std::filesystem::path& path, const std::string& context);

// A label map as the reference reads it with PIL (np.array(Image.open(path))): uint8 [H, W] of stored values.
// Gray PNGs give their values; palette PNGs give palette indices (recovered from the colours through the PLTE
// chunk; when several palette entries share a colour the lowest index wins, which is right for palettes padded
// with black after the last class, as Mapillary's are). 16-bit or colour (non-palette) label images are refused.
// Throws BadEntry naming `context` and the file.
at::Tensor read_label_png(const std::filesystem::path& path, const std::string& context);

// cv2.imread(path) + cv2.cvtColor(BGR2GRAY), as the reference reads RefCOCOm mask PNGs: uint8 [H, W].
at::Tensor read_gray_like_cv2(const std::filesystem::path& path, const std::string& context);

}  // namespace m2sa::data
