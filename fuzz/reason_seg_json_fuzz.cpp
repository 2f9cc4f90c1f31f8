// Fuzz target: a ReasonSeg LabelMe annotation JSON (shapes with polygons, labels, text, is_sentence; UTF-8 or
// cp1252) through read_reason_seg_json, drawn on a small image.
#include "fuzz_target.h"
#include "m2sa/data/vqa_reason_datasets.h"

M2SA_FUZZ_TARGET(reason_seg_json) {
  const auto path = m2sa::fuzz::write_temp("reason_seg.json", data, size);
  return m2sa::fuzz::swallow_error([&] { (void)m2sa::data::read_reason_seg_json(path, 37, 53); });
}
