#pragma once
// Image files in and out. Only JPEG and PNG are read, recognised by their magic bytes whatever the file is called;
// anything else is refused before it reaches a decoder. Decoding uses OpenCV like the reference (`cv2.imread` +
// BGR->RGB): gray and RGBA become RGB, 16-bit becomes 8-bit, a JPEG is turned by its EXIF orientation, a JPEG
// without its end-of-image marker decodes as cv2.imread's stdio source decodes it (with a warning), and Debian's
// libjpeg-turbo gives the reference's bytes. Unlike cv2.imread, bad files are errors that name the file: missing,
// not JPEG or PNG, empty, or larger than the configured pixel limit (checked from the header before decoding).
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <string>

namespace m2sa {

struct ImageLimits {
  int64_t max_pixels = int64_t{1} << 28;  // 268 M pixels (16384 x 16384)
};

// uint8 [H, W, 3] RGB, contiguous.
at::Tensor read_image_rgb(const std::filesystem::path& path, const ImageLimits& limits = {});
at::Tensor decode_image_rgb(const std::string& bytes, const std::string& name, const ImageLimits& limits = {});

// Width and height from the file header (PNG, JPEG, BMP, GIF, WebP) without decoding, as decoded (a JPEG's EXIF
// orientation 5..8 swaps them, as the decoder turns the image); {0, 0} if unknown.
std::pair<int64_t, int64_t> image_header_size(const std::string& bytes);

// Encodes uint8 [H, W, 3] RGB or [H, W] gray as ".png" or ".jpg" bytes.
std::string encode_image(const at::Tensor& image, const std::string& ext);

// Writes uint8 [H, W, 3] RGB or [H, W] gray as PNG (or JPEG by extension), atomically.
void write_image(const std::filesystem::path& path, const at::Tensor& image);

}  // namespace m2sa
