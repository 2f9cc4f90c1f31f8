#pragma once
// A compact in-memory index of a COCO-format annotation file (PACO-LVIS, PASCAL-Part, the refer datasets'
// instances.json): images, categories, and annotations with their `segmentation` kept as compact JSON text (parsed
// again when a mask is needed, which gives the very same doubles), so a large file does not stay in memory as a
// JSON tree. Annotation order per image is file order, as pycocotools' imgToAnns.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <unordered_map>
#include <vector>

#include "m2sa/data/dataset.h"

namespace m2sa::data {

struct CocoImage {
  int64_t id = 0;
  std::string file_name;
  int64_t height = 0, width = 0;
  std::vector<int64_t> anns;  // indices into CocoIndex::anns, file order
};

struct CocoAnn {
  int64_t id = 0;
  int64_t image_id = 0;
  int64_t category_id = 0;
  std::string segmentation;  // compact JSON text of the `segmentation` value ("[]" when empty)
};

struct CocoIndex {
  std::filesystem::path path;
  std::vector<CocoImage> images;  // file order
  std::vector<CocoAnn> anns;      // file order
  std::vector<std::pair<int64_t, std::string>> categories;  // (id, name), file order
  std::unordered_map<int64_t, std::size_t> image_by_id;
  std::unordered_map<int64_t, std::size_t> ann_by_id;
  std::unordered_map<int64_t, std::size_t> category_by_id;

  // `COCO.annToMask(ann)` at the image's size: uint8 [H, W] in {0, 1}. Throws BadEntry naming the file and ids.
  at::Tensor ann_to_mask(const CocoAnn& ann) const;
  // Refer-style mask (refer_seg_dataset.py): an empty segmentation gives zeros; polygons / RLE lists are merged
  // (the reference sums overlapping parts, giving 2 where two parts overlap; a mask is binary here). `height`,
  // `width`: the image's size from instances.json.
  at::Tensor refer_mask(const CocoAnn& ann, int64_t height, int64_t width) const;
};

// Reads images / annotations / categories. A malformed image, annotation or category is a BadEntry naming the file
// and the item; with skip_bad it is left out and counted in `report`. An annotation whose image_id is unknown is
// bad data too.
CocoIndex read_coco_json(const std::filesystem::path& path, const std::string& dataset, bool skip_bad = false,
                         SkipReport* report = nullptr);

}  // namespace m2sa::data
