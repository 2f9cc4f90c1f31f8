#pragma once
// COCO mask codecs with pycocotools semantics (cocodataset/cocoapi common/maskApi.c, PythonAPI/pycocotools/
// {mask.py,_mask.pyx,coco.py}), in plain C++ so the core library needs no OpenCV:
//  - run-length encoding over the image in column-major (Fortran) order, first run = background;
//  - the compressed "counts" string (LEB128-like, 6 bits per char, chars 48..111, deltas from the run two back);
//  - polygon rasterisation exactly as `rleFrPoly` (5x upsampled boundary walk, y-boundary crossings), so
//    `ann_to_mask` gives the same pixels as `COCO.annToMask`;
//  - bbox -> polygon (`rleFrBbox`), union/intersection (`rleMerge`), area, bbox (`rleToBbox`).
// Unlike pycocotools, malformed input is an error that says what is wrong (a character outside 48..111,
// counts that do not add up to h*w, a negative size, ...) instead of undefined behaviour.
#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace m2sa::coco {

// One mask as runs: counts[0] zeros, counts[1] ones, ... in column-major pixel order. sum(counts) == h * w.
struct Rle {
  int64_t h = 0;
  int64_t w = 0;
  std::vector<uint32_t> counts;

  bool operator==(const Rle& o) const { return h == o.h && w == o.w && counts == o.counts; }
};

// pycocotools `rleToString` / `rleFrString`. `counts_from_string` throws m2sa::Error (prefixed by `what`) on a
// character outside '0'..'o', a truncated value, or a count that is negative or above 2^32-1.
std::string counts_to_string(const std::vector<uint32_t>& counts);
std::vector<uint32_t> counts_from_string(std::string_view s, const std::string& what = "RLE counts");

// Checks that the runs cover exactly h * w pixels; throws naming `what` otherwise.
void check_rle(const Rle& rle, const std::string& what = "RLE");

// Decodes to uint8 [h, w] (row-major tensor, values {0, 1}). Throws if the runs do not cover h * w pixels.
at::Tensor decode(const Rle& rle, const std::string& what = "RLE");
// Decodes into a row-major uint8 buffer of h * w bytes (ORs ones into it when `accumulate`, else overwrites).
void decode_into(const Rle& rle, uint8_t* row_major, bool accumulate = false, const std::string& what = "RLE");

// Encodes a row-major binary mask (any nonzero byte is foreground) like pycocotools `encode`.
Rle encode(const uint8_t* row_major, int64_t h, int64_t w);
Rle encode(const at::Tensor& mask);  // uint8 or bool [H, W]

// `rleFrPoly`: xy = [x0, y0, x1, y1, ...] (an odd trailing value is ignored, as pycocotools does).
Rle from_polygon(const std::vector<double>& xy, int64_t h, int64_t w);
// `rleFrBbox`: bbox = [x, y, width, height].
Rle from_bbox(const std::array<double, 4>& bbox, int64_t h, int64_t w);
// `rleMerge` (union, or intersection). All inputs must have the same size, else pycocotools returns an empty
// 0x0 RLE; here that is an error.
Rle merge(const std::vector<Rle>& rles, bool intersect = false);
// `rleArea`: number of foreground pixels.
uint64_t area(const Rle& rle);
// `rleToBbox`: [x, y, width, height] of the foreground (all zeros when empty).
std::array<double, 4> bbox(const Rle& rle);

// A COCO `segmentation` value to one RLE, as `COCO.annToRLE` does with the image size (img_h, img_w):
//  - a list of polygons -> `frPyObjects` + `merge`; a first element with exactly 4 numbers is refused (pycocotools
//    would take the list for boxes and fail);
//  - {"size": [h, w], "counts": [ints]} (uncompressed) -> the counts as given;
//  - {"size": [h, w], "counts": "string"} (compressed) -> decoded string.
// Also accepted (the refer datasets' layout): a list of RLE dicts, merged. When `check_size` the RLE size must
// equal (img_h, img_w). Errors name `what` and the problem.
Rle segmentation_to_rle(const nlohmann::json& segm, int64_t img_h, int64_t img_w, const std::string& what,
                        bool check_size = true);
// `COCO.annToMask`: uint8 [img_h, img_w] in {0, 1}.
at::Tensor ann_to_mask(const nlohmann::json& segm, int64_t img_h, int64_t img_w, const std::string& what);

// {"size": [h, w], "counts": "<compressed>"} as pycocotools `encode` returns it (counts as a str).
nlohmann::json rle_to_json(const Rle& rle);

}  // namespace m2sa::coco
