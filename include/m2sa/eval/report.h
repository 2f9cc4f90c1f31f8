#pragma once
// The evaluation report: one JSON document per (split, mode) and the plain-text table printed on stdout. The
// table is rendered from the JSON, so the two never disagree. Metric values in the JSON are fractions in
// [0, 1] (like the reference's printed `giou: 0.2783`); the table prints percentages (like the paper).
//
// Report layout (all counts are integers):
//   {"split", "mode", "model", "world_size", "giou", "ciou",
//    "counts": {images_seen, images_scored, images_skipped, images_without_gt, masks_scored, masks_skipped,
//               predictions, matched, missing_predictions, extra_predictions},
//    "seg_count": {exact, too_few, too_many},
//    "categories": {"top_k", "uncategorised_masks",
//                   "objects": {"num_categories", "most_frequent": [{name, masks, giou, ciou}], "least_frequent"},
//                   "parts":   {...}},
//    "timing": {total_s, s_per_image, images_per_s},
//    "protocol": "<one sentence on how the numbers were computed>",
//    "sums": {MetricSums, raw}, "extra": {...caller's fields}}
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "m2sa/core/json_reader.h"
#include "m2sa/eval/seg_meter.h"

namespace m2sa::eval {

struct ReportInfo {
  std::string split;             // "val", "test/obj", "refcoco/testA", ...
  std::string model;             // model folder or name, for the record (may be empty)
  double seconds = 0.0;          // wall time of the whole evaluation
  int64_t world_size = 1;        // ranks that contributed
  size_t top_k = 10;             // categories per most/least-frequent table
  json extra = json::object();   // caller's additional fields (config path, dataset dir, batch size, ...)
};

json make_report(const SegMeter& meter, const ReportInfo& info);

// Writes the report atomically (temp file + rename), pretty-printed.
void write_report(const std::filesystem::path& path, const json& report);

// The stdout table for one report: scores, counts, [SEG] count errors, timing and the category tables.
// Fields missing from `report` are an m2sa::Error naming the field.
std::string format_report_table(const json& report);

// One line per report (split, mode, images, masks, gIoU, cIoU), for a run over several splits.
std::string format_summary_table(const std::vector<json>& reports);

}  // namespace m2sa::eval
