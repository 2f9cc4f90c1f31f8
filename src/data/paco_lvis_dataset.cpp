// PACO-LVIS: <dataset_dir>/vlpart/paco/annotations/paco_lvis_v1_train.json, images <dataset_dir>/coco/<file_name>.
// Category names "obj" or "obj:part"; each side drops a "_(...)" suffix ("bottle_(drink):cap" -> bottle, cap).
#include "coco_part_dataset.h"

namespace m2sa::data {

namespace fs = std::filesystem;

std::unique_ptr<TrainDataset> make_paco_lvis_dataset(const fs::path& dataset_dir, const SemSegOptions& options,
                                                      const QuestionLists& lists, SkipReport* report) {
  const fs::path path = dataset_dir / "vlpart" / "paco" / "annotations" / "paco_lvis_v1_train.json";
  CocoIndex index = read_coco_json(path, "paco_lvis", options.skip_bad, report);
  std::unordered_map<int64_t, detail::PartName> names;
  for (const auto& [id, raw] : index.categories) {
    std::string name = raw;
    const std::size_t b = name.find_first_not_of(" \t\n\r");
    const std::size_t e = name.find_last_not_of(" \t\n\r");
    name = b == std::string::npos ? "" : name.substr(b, e - b + 1);
    const std::size_t colon = name.find(':');
    if (colon == std::string::npos) {
      names[id] = {strip_paren_suffix(name), ""};
    } else {
      if (name.find(':', colon + 1) != std::string::npos)
        fail(path.string(), ": category ", id, " \"", raw, "\" has more than one ':' (expected \"obj\" or \"obj:part\")");
      names[id] = {strip_paren_suffix(name.substr(0, colon)), strip_paren_suffix(name.substr(colon + 1))};
    }
  }
  const fs::path coco = dataset_dir / "coco";
  return std::make_unique<detail::CocoPartDataset>(
      "paco_lvis", std::move(index), std::move(names), [coco](const std::string& f) { return coco / f; }, options,
      lists);
}

}  // namespace m2sa::data
