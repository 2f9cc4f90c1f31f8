// Fuzz target: a COCO instances JSON (the refer datasets' instances.json, PACO / COCO-Stuff style files) through
// read_coco_json, strict and with skip_bad, then every annotation's mask at its image size when that is small.
#include "fuzz_target.h"
#include "m2sa/data/coco_json.h"

M2SA_FUZZ_TARGET(coco_json) {
  const auto path = m2sa::fuzz::write_temp("instances.json", data, size);
  m2sa::fuzz::swallow_error([&] { (void)m2sa::data::read_coco_json(path, "fuzz"); });
  return m2sa::fuzz::swallow_error([&] {
    m2sa::data::SkipReport report;
    const m2sa::data::CocoIndex index = m2sa::data::read_coco_json(path, "fuzz", /*skip_bad=*/true, &report);
    for (const auto& ann : index.anns) {
      auto it = index.image_by_id.find(ann.image_id);
      if (it == index.image_by_id.end()) continue;
      const auto& img = index.images[it->second];
      if (img.height <= 0 || img.width <= 0 || img.height > 512 || img.width > 512) continue;
      m2sa::fuzz::swallow_error([&] { (void)index.ann_to_mask(ann); });
      m2sa::fuzz::swallow_error([&] { (void)index.refer_mask(ann, img.height, img.width); });
    }
  });
}
