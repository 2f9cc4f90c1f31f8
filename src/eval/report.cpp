#include "m2sa/eval/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "m2sa/core/error.h"

namespace m2sa::eval {

namespace {

int64_t as_count(double v) { return static_cast<int64_t>(std::llround(v)); }

json category_rows(const std::vector<CategoryRow>& rows) {
  json out = json::array();
  for (const CategoryRow& r : rows)
    out.push_back({{"name", r.name}, {"masks", as_count(r.sums.masks)}, {"giou", r.sums.giou()}, {"ciou", r.sums.ciou()}});
  return out;
}

json category_table(const CategoryStats& stats, bool is_part, size_t k) {
  return {{"num_categories", stats.num_categories(is_part)},
          {"most_frequent", category_rows(stats.most_frequent(is_part, k))},
          {"least_frequent", category_rows(stats.least_frequent(is_part, k))}};
}

const char* protocol_text(EvalMode mode) {
  if (mode == EvalMode::kTeacherForced)
    return "teacher-forced (published protocol, MMR train_ds.py validate): GT [SEG] tokens fed, mask = logit > 0; "
           "gIoU = sum of per-mask I/(U+1e-5) (+1 when U = 0) / (GT masks + 1e-5) over the split; "
           "cIoU = sum I / (sum U + 1e-10); pairs zipped in order, missing predictions score 0, "
           "images without predictions skipped";
  return "generate (m2sa policy): generated [SEG] masks matched one-to-one to GT masks by maximum total IoU "
         "(Hungarian); unmatched GT masks score IoU 0 and add their area to the cIoU union; extra predictions are "
         "reported, not scored; gIoU/cIoU formulas as teacher-forced; no image is skipped";
}

// Strict accessors for format_report_table.
const json& field(const json& j, const std::string& key, const std::string& where) {
  M2SA_CHECK(j.is_object() && j.contains(key), "evaluation report: ", where.empty() ? "" : where + ".", key,
             ": required field is missing");
  return j.at(key);
}
double number(const json& j, const std::string& key, const std::string& where) {
  const json& v = field(j, key, where);
  M2SA_CHECK(v.is_number(), "evaluation report: ", where.empty() ? "" : where + ".", key, ": expected a number, got ",
             v.dump());
  return v.get<double>();
}
std::string text(const json& j, const std::string& key, const std::string& where) {
  const json& v = field(j, key, where);
  M2SA_CHECK(v.is_string(), "evaluation report: ", where.empty() ? "" : where + ".", key, ": expected a string, got ",
             v.dump());
  return v.get<std::string>();
}

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), format, v);
  return buf;
}

std::string pad(std::string s, size_t width, bool right_align) {
  if (s.size() >= width) return s;
  return right_align ? std::string(width - s.size(), ' ') + s : s + std::string(width - s.size(), ' ');
}

// Names longer than `width` are cut with "..." so the columns stay aligned.
std::string fit(const std::string& s, size_t width) {
  if (s.size() <= width) return s;
  return s.substr(0, width - 3) + "...";
}

void category_block(std::ostringstream& out, const json& table, const std::string& kind, const std::string& where) {
  for (const char* which : {"most_frequent", "least_frequent"}) {
    const json& rows = field(table, which, where);
    M2SA_CHECK(rows.is_array(), "evaluation report: ", where, ".", which, ": expected an array");
    if (rows.empty()) continue;
    size_t width = 8;
    for (const json& r : rows) width = std::max(width, std::min<size_t>(text(r, "name", where).size(), 40));
    out << "\n" << (std::string(which) == "most_frequent" ? "Most" : "Least") << " frequent " << kind
        << " categories (" << rows.size() << " of " << as_count(number(table, "num_categories", where)) << ")\n";
    out << "  " << pad("category", width, false) << "  " << pad("masks", 7, true) << "  " << pad("gIoU", 6, true)
        << "  " << pad("cIoU", 6, true) << "\n";
    for (const json& r : rows)
      out << "  " << pad(fit(text(r, "name", where), 40), width, false) << "  "
          << pad(std::to_string(as_count(number(r, "masks", where))), 7, true) << "  "
          << pad(fmt("%.2f", 100.0 * number(r, "giou", where)), 6, true) << "  "
          << pad(fmt("%.2f", 100.0 * number(r, "ciou", where)), 6, true) << "\n";
  }
}

}  // namespace

json make_report(const SegMeter& meter, const ReportInfo& info) {
  const MetricSums& s = meter.sums();
  const double images = s[MetricSums::kImagesSeen];
  json report;
  report["split"] = info.split;
  report["mode"] = to_string(meter.mode());
  report["model"] = info.model;
  report["world_size"] = info.world_size;
  report["giou"] = s.giou();
  report["ciou"] = s.ciou();
  report["counts"] = {{"images_seen", as_count(images)},
                      {"images_scored", as_count(s[MetricSums::kImagesScored])},
                      {"images_skipped", as_count(s[MetricSums::kImagesSkipped])},
                      {"images_without_gt", as_count(s[MetricSums::kImagesWithoutGt])},
                      {"masks_scored", as_count(s[MetricSums::kMasks])},
                      {"masks_skipped", as_count(s[MetricSums::kMasksSkipped])},
                      {"predictions", as_count(s[MetricSums::kPredictions])},
                      {"matched", as_count(s[MetricSums::kMatched])},
                      {"missing_predictions", as_count(s[MetricSums::kMissing])},
                      {"extra_predictions", as_count(s[MetricSums::kExtra])}};
  report["seg_count"] = {{"exact", as_count(s[MetricSums::kCountExact])},
                         {"too_few", as_count(s[MetricSums::kCountTooFew])},
                         {"too_many", as_count(s[MetricSums::kCountTooMany])}};
  const CategoryStats& cats = meter.categories();
  report["categories"] = {{"top_k", info.top_k},
                          {"uncategorised_masks", as_count(cats.uncategorised_masks())},
                          {"objects", category_table(cats, false, info.top_k)},
                          {"parts", category_table(cats, true, info.top_k)}};
  report["timing"] = {{"total_s", info.seconds},
                      {"s_per_image", images > 0 ? info.seconds / images : 0.0},
                      {"images_per_s", info.seconds > 0 ? images / info.seconds : 0.0}};
  report["protocol"] = protocol_text(meter.mode());
  report["sums"] = s.to_json();
  report["extra"] = info.extra.is_null() ? json::object() : info.extra;
  return report;
}

void write_report(const std::filesystem::path& path, const json& report) {
  with_context("writing evaluation report " + path.string(), [&] { write_json_file(path, report); });
}

std::string format_report_table(const json& report) {
  std::ostringstream out;
  const json& counts = field(report, "counts", "");
  const json& seg = field(report, "seg_count", "");
  const json& timing = field(report, "timing", "");
  auto c = [&](const char* key) { return as_count(number(counts, key, "counts")); };
  out << "split " << text(report, "split", "") << "  mode " << text(report, "mode", "");
  if (report.contains("model") && report["model"].is_string() && !report["model"].get<std::string>().empty())
    out << "  model " << report["model"].get<std::string>();
  out << "\n";
  out << "  gIoU " << fmt("%.2f", 100.0 * number(report, "giou", "")) << "   cIoU "
      << fmt("%.2f", 100.0 * number(report, "ciou", "")) << "   (%)\n";
  out << "  images: " << c("images_seen") << " seen, " << c("images_scored") << " scored, " << c("images_skipped")
      << " skipped (no prediction), " << c("images_without_gt") << " without GT\n";
  out << "  masks:  " << c("masks_scored") << " GT scored (" << c("matched") << " with a prediction, "
      << c("missing_predictions") << " without), " << c("masks_skipped") << " in skipped images; "
      << c("predictions") << " predicted, " << c("extra_predictions") << " extra\n";
  out << "  [SEG] count per image: " << as_count(number(seg, "exact", "seg_count")) << " exact, "
      << as_count(number(seg, "too_few", "seg_count")) << " too few, "
      << as_count(number(seg, "too_many", "seg_count")) << " too many\n";
  out << "  time " << fmt("%.1f", number(timing, "total_s", "timing")) << " s ("
      << fmt("%.3f", number(timing, "s_per_image", "timing")) << " s/image)\n";
  const json& cats = field(report, "categories", "");
  category_block(out, field(cats, "objects", "categories"), "object", "categories.objects");
  category_block(out, field(cats, "parts", "categories"), "part", "categories.parts");
  return out.str();
}

std::string format_summary_table(const std::vector<json>& reports) {
  size_t width = 5;
  for (const json& r : reports) width = std::max(width, text(r, "split", "").size());
  std::ostringstream out;
  out << pad("split", width, false) << "  " << pad("mode", 14, false) << "  " << pad("images", 7, true) << "  "
      << pad("masks", 7, true) << "  " << pad("gIoU", 6, true) << "  " << pad("cIoU", 6, true) << "\n";
  for (const json& r : reports) {
    const json& counts = field(r, "counts", "");
    out << pad(text(r, "split", ""), width, false) << "  " << pad(text(r, "mode", ""), 14, false) << "  "
        << pad(std::to_string(as_count(number(counts, "images_scored", "counts"))), 7, true) << "  "
        << pad(std::to_string(as_count(number(counts, "masks_scored", "counts"))), 7, true) << "  "
        << pad(fmt("%.2f", 100.0 * number(r, "giou", "")), 6, true) << "  "
        << pad(fmt("%.2f", 100.0 * number(r, "ciou", "")), 6, true) << "\n";
  }
  return out.str();
}

}  // namespace m2sa::eval
