// Fuzz target: COCO RLE. The first two bytes choose a small mask size; the rest is used three ways:
//  1. as a compressed counts string (pycocotools rleFrString): decoded, and when it covers h*w pixels, decoded
//     to a mask, which must encode back to the same runs;
//  2. as mask bits: encode -> counts string -> counts -> decode must give the mask back;
//  3. as polygon coordinates (rleFrPoly), which must give runs that cover the image.
// A round trip that is not the identity aborts (a finding).
#include <ATen/ATen.h>

#include <cstring>
#include <string_view>
#include <vector>

#include "fuzz_target.h"
#include "m2sa/io/coco_mask.h"

M2SA_FUZZ_TARGET(coco_rle) {
  namespace coco = m2sa::coco;
  if (size < 2) return 0;
  const int64_t h = 1 + data[0] % 64, w = 1 + data[1] % 64;
  const std::string_view rest(reinterpret_cast<const char*>(data + 2), size - 2);

  // 1. Compressed counts.
  m2sa::fuzz::swallow_error([&] {
    coco::Rle rle{h, w, coco::counts_from_string(rest)};
    // Canonical text of these runs reads back to the same runs.
    M2SA_FUZZ_ASSERT(coco::counts_from_string(coco::counts_to_string(rle.counts)) == rle.counts);
    coco::check_rle(rle);
    const at::Tensor mask = coco::decode(rle);
    const coco::Rle again = coco::encode(mask);
    // encode() writes no empty runs after the first; decoded masks are the same whatever runs made them.
    M2SA_FUZZ_ASSERT(coco::decode(again).equal(mask));
    M2SA_FUZZ_ASSERT(static_cast<int64_t>(coco::area(again)) == mask.sum().item<int64_t>());
  });

  // 2. Mask bits.
  std::vector<uint8_t> mask(static_cast<std::size_t>(h * w));
  for (std::size_t i = 0; i < mask.size(); ++i)
    mask[i] = rest.empty() ? 0 : (static_cast<uint8_t>(rest[(i / 8) % rest.size()]) >> (i % 8)) & 1;
  const coco::Rle rle = coco::encode(mask.data(), h, w);
  const coco::Rle parsed{h, w, coco::counts_from_string(coco::counts_to_string(rle.counts))};
  M2SA_FUZZ_ASSERT(parsed == rle);
  std::vector<uint8_t> back(mask.size(), 7);
  coco::decode_into(parsed, back.data());
  M2SA_FUZZ_ASSERT(back == mask);
  M2SA_FUZZ_ASSERT(coco::encode(back.data(), h, w) == rle);

  // 3. Polygon coordinates (doubles from the bytes; NaN, inf and huge values included).
  std::vector<double> xy(rest.size() / sizeof(double));
  if (!xy.empty()) std::memcpy(xy.data(), rest.data(), xy.size() * sizeof(double));
  m2sa::fuzz::swallow_error([&] {
    const coco::Rle poly = coco::from_polygon(xy, h, w);
    coco::check_rle(poly);
    M2SA_FUZZ_ASSERT(poly.h == h && poly.w == w);
  });
  return 0;
}
