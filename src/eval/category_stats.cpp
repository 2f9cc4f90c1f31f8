#include "m2sa/eval/category_stats.h"

#include <algorithm>
#include <cmath>

#include "m2sa/core/error.h"
#include "m2sa/eval/metric_sums.h"

namespace m2sa::eval {

double CategorySums::giou() const { return iou_sum / (masks + kGiouCountEps); }
double CategorySums::ciou() const { return intersection / (union_ + kCiouUnionEps); }

void CategorySums::merge(const CategorySums& other) {
  masks += other.masks;
  iou_sum += other.iou_sum;
  intersection += other.intersection;
  union_ += other.union_;
}

void CategoryStats::add(const Target& target, double iou, int64_t intersection, int64_t union_) {
  if (target.category.empty()) {
    uncategorised_ += 1;
    return;
  }
  CategorySums& s = by_key_[{target.is_part, target.category}];
  s.masks += 1;
  s.iou_sum += iou;
  s.intersection += static_cast<double>(intersection);
  s.union_ += static_cast<double>(union_);
}

void CategoryStats::merge(const CategoryStats& other) {
  for (const auto& [key, sums] : other.by_key_) by_key_[key].merge(sums);
  uncategorised_ += other.uncategorised_;
}

std::vector<CategoryRow> CategoryStats::all() const {
  std::vector<CategoryRow> rows;
  rows.reserve(by_key_.size());
  for (const auto& [key, sums] : by_key_) rows.push_back({key.second, key.first, sums});
  return rows;
}

size_t CategoryStats::num_categories(bool is_part) const {
  size_t n = 0;
  for (const auto& entry : by_key_) n += entry.first.first == is_part ? 1 : 0;
  return n;
}

namespace {
std::vector<CategoryRow> ranked(const std::map<std::pair<bool, std::string>, CategorySums>& by_key, bool is_part,
                                size_t k, bool most) {
  std::vector<CategoryRow> rows;
  for (const auto& [key, sums] : by_key)
    if (key.first == is_part) rows.push_back({key.second, key.first, sums});
  // by_key is ordered by name, so a stable sort on frequency keeps names ascending within ties.
  std::stable_sort(rows.begin(), rows.end(), [most](const CategoryRow& a, const CategoryRow& b) {
    return most ? a.sums.masks > b.sums.masks : a.sums.masks < b.sums.masks;
  });
  if (rows.size() > k) rows.resize(k);
  return rows;
}
}  // namespace

std::vector<CategoryRow> CategoryStats::most_frequent(bool is_part, size_t k) const {
  return ranked(by_key_, is_part, k, true);
}

std::vector<CategoryRow> CategoryStats::least_frequent(bool is_part, size_t k) const {
  return ranked(by_key_, is_part, k, false);
}

json CategoryStats::to_json() const {
  json list = json::array();
  for (const auto& [key, s] : by_key_)
    list.push_back(json::array({key.second, key.first, s.masks, s.iou_sum, s.intersection, s.union_}));
  return {{"categories", list}, {"uncategorised_masks", uncategorised_}};
}

CategoryStats CategoryStats::from_json(const json& j, const std::string& where) {
  JsonReader r(j, where);
  CategoryStats out;
  out.uncategorised_ = r.get<double>("uncategorised_masks");
  const json& list = r.raw("categories");
  M2SA_CHECK(list.is_array(), where, ": categories: expected an array, got ", list.dump());
  r.finish();
  for (size_t i = 0; i < list.size(); ++i) {
    const json& e = list[i];
    const bool ok = e.is_array() && e.size() == 6 && e[0].is_string() && e[1].is_boolean() && e[2].is_number() &&
                    e[3].is_number() && e[4].is_number() && e[5].is_number();
    M2SA_CHECK(ok, where, ": categories[", i, "]: expected [name, is_part, masks, iou_sum, intersection, union], got ",
               e.dump());
    CategorySums s{e[2].get<double>(), e[3].get<double>(), e[4].get<double>(), e[5].get<double>()};
    M2SA_CHECK(std::isfinite(s.masks + s.iou_sum + s.intersection + s.union_), where, ": categories[", i,
               "]: non-finite value in ", e.dump());
    auto [it, inserted] = out.by_key_.emplace(std::make_pair(e[1].get<bool>(), e[0].get<std::string>()), s);
    M2SA_CHECK(inserted, where, ": categories[", i, "]: duplicate category ", e[0].dump(),
               e[1].get<bool>() ? " (part)" : " (object)");
  }
  return out;
}

}  // namespace m2sa::eval
