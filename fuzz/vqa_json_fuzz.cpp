// Fuzz target: a LLaVA-Instruct VQA JSON (list of {id, image, conversations}) through VqaDataset, strict and with
// skip_bad.
#include "fuzz_target.h"
#include "m2sa/data/vqa_reason_datasets.h"

M2SA_FUZZ_TARGET(vqa_json) {
  const auto root = m2sa::fuzz::TempDir::get() / "vqa_json";
  m2sa::fuzz::write_temp("vqa_json/llava_dataset/fuzz.json", data, size);
  m2sa::fuzz::swallow_error([&] { (void)m2sa::data::VqaDataset(root, "fuzz"); });
  return m2sa::fuzz::swallow_error([&] {
    m2sa::data::SkipReport report;
    (void)m2sa::data::VqaDataset(root, "fuzz", /*skip_bad=*/true, &report);
  });
}
