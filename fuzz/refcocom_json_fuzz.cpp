// Fuzz target: a RefCOCOm annotation JSON (list of {img_name, segment_id, sentences}) through RefCocomEvalDataset,
// strict and with skip_bad.
#include "fuzz_target.h"
#include "m2sa/data/refer_datasets.h"

M2SA_FUZZ_TARGET(refcocom_json) {
  const auto root = m2sa::fuzz::TempDir::get() / "refcocom_json";
  m2sa::fuzz::write_temp("refcocom_json/refer_seg/RefCOCOm/annotations/fuzz.json", data, size);
  m2sa::fuzz::swallow_error([&] { (void)m2sa::data::RefCocomEvalDataset(root, "fuzz.json"); });
  return m2sa::fuzz::swallow_error([&] {
    m2sa::data::SkipReport report;
    (void)m2sa::data::RefCocomEvalDataset(root, "fuzz.json", /*skip_bad=*/true, &report);
  });
}
