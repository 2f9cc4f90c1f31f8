#include "m2sa/eval/metric_sums.h"

#include <cmath>

#include "m2sa/core/error.h"

namespace m2sa::eval {

const char* MetricSums::name(size_t field) {
  static const char* const kNames[kSize] = {
      "iou_sum",        "masks",      "intersection",      "union",       "images_seen",   "images_scored",
      "images_skipped", "masks_skipped", "images_without_gt", "predictions", "matched",       "missing",
      "extra",          "count_exact", "count_too_few",     "count_too_many"};
  M2SA_CHECK(field < kSize, "MetricSums: field index ", field, " out of range (", kSize, " fields)");
  return kNames[field];
}

double MetricSums::giou() const { return values[kIouSum] / (values[kMasks] + kGiouCountEps); }

double MetricSums::ciou() const { return values[kIntersection] / (values[kUnion] + kCiouUnionEps); }

void MetricSums::merge(const MetricSums& other) {
  for (size_t i = 0; i < kSize; ++i) values[i] += other.values[i];
}

std::vector<double> MetricSums::to_vector() const { return std::vector<double>(values.begin(), values.end()); }

MetricSums MetricSums::from_vector(const std::vector<double>& v) {
  M2SA_CHECK(v.size() == kSize, "MetricSums: expected ", kSize, " values, got ", v.size());
  MetricSums s;
  for (size_t i = 0; i < kSize; ++i) {
    M2SA_CHECK(std::isfinite(v[i]) && v[i] >= 0, "MetricSums: ", name(i), " must be a finite number >= 0, got ", v[i]);
    s.values[i] = v[i];
  }
  return s;
}

json MetricSums::to_json() const {
  json j = json::object();
  for (size_t i = 0; i < kSize; ++i) j[name(i)] = values[i];
  return j;
}

MetricSums MetricSums::from_json(const json& j, const std::string& where) {
  M2SA_CHECK(j.is_object(), where, ": metric sums must be a JSON object, got ", j.dump());
  JsonReader r(j, where);
  std::vector<double> v(kSize);
  for (size_t i = 0; i < kSize; ++i) v[i] = r.get<double>(name(i));
  r.finish();
  return with_context(where, [&] { return from_vector(v); });
}

}  // namespace m2sa::eval
