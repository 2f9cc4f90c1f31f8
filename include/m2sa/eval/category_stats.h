#pragma once
// Per-category gIoU / cIoU, for the paper's tables of the most and least frequent object and part categories
// (M2SA paper, Tables 10 and 11). A category is (name, is_part) from m2sa::Target; "frequency" is the number of
// scored GT masks of that category in the split. Same formulas as the whole split (metric_sums.h).
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "m2sa/core/json_reader.h"
#include "m2sa/data/sample.h"

namespace m2sa::eval {

struct CategorySums {
  double masks = 0;         // scored GT masks of this category (its frequency)
  double iou_sum = 0;       // sum of per-mask IoU
  double intersection = 0;  // class-1 areas
  double union_ = 0;

  double giou() const;  // iou_sum / (masks + 1e-5)
  double ciou() const;  // intersection / (union + 1e-10)
  void merge(const CategorySums& other);
};

struct CategoryRow {
  std::string name;
  bool is_part = false;
  CategorySums sums;
};

class CategoryStats {
 public:
  // One scored GT mask. A target with an empty category counts as uncategorised (not in any table).
  void add(const Target& target, double iou, int64_t intersection, int64_t union_);

  void merge(const CategoryStats& other);

  // Top-k by frequency (masks descending, then name ascending) and bottom-k (masks ascending, then name), for
  // objects (is_part false) or parts. k larger than the number of categories returns them all.
  std::vector<CategoryRow> most_frequent(bool is_part, size_t k) const;
  std::vector<CategoryRow> least_frequent(bool is_part, size_t k) const;

  size_t num_categories(bool is_part) const;
  double uncategorised_masks() const { return uncategorised_; }
  // Every category, ordered by (is_part, name).
  std::vector<CategoryRow> all() const;

  // Full state for gathering across ranks ({"categories": [[name, is_part, masks, iou_sum, I, U], ...],
  // "uncategorised_masks": n}); doubles round-trip exactly through nlohmann::json.
  json to_json() const;
  static CategoryStats from_json(const json& j, const std::string& where);

 private:
  std::map<std::pair<bool, std::string>, CategorySums> by_key_;  // (is_part, name)
  double uncategorised_ = 0;
};

}  // namespace m2sa::eval
