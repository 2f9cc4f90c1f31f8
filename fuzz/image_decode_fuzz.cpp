// Fuzz target: image bytes through decode_image_rgb (magic-byte check, header size against the default pixel
// limit, OpenCV's PNG / JPEG decoders), and image_header_size on the same bytes.
#include <string>

#include "fuzz_target.h"
#include "m2sa/vision/image_io.h"

M2SA_FUZZ_TARGET(image_decode) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  (void)m2sa::image_header_size(bytes);
  return m2sa::fuzz::swallow_error([&] { (void)m2sa::decode_image_rgb(bytes, "fuzz.img"); });
}
