// Fuzz target: an MMR JSON file through read_mmr_json (the streaming parser, strict and with skip_bad), then the
// masks of every question decoded at their RLE size when that is small.
#include <vector>

#include "fuzz_target.h"
#include "m2sa/data/mmr_dataset.h"

M2SA_FUZZ_TARGET(mmr_json) {
  const auto path = m2sa::fuzz::write_temp("MMR_fuzz.json", data, size);
  m2sa::fuzz::swallow_error([&] { (void)m2sa::data::read_mmr_json(path); });
  return m2sa::fuzz::swallow_error([&] {
    m2sa::data::SkipReport report;
    const m2sa::data::MmrFile file = m2sa::data::read_mmr_json(path, /*skip_bad=*/true, &report);
    for (const auto& entry : file.entries) {
      for (const auto& q : entry.questions) {
        if (q.targets.empty()) continue;
        const int64_t h = q.targets[0].rle_h, w = q.targets[0].rle_w;
        if (h <= 0 || w <= 0 || h > 512 || w > 512) continue;
        std::vector<const m2sa::data::MmrTarget*> targets;
        for (const auto& t : q.targets) targets.push_back(&t);
        m2sa::fuzz::swallow_error([&] { (void)m2sa::data::decode_mmr_targets(targets, h, w, "fuzz"); });
      }
    }
  });
}
