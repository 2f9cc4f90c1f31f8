// PASCAL-Part: <dataset_dir>/vlpart/pascal_part/train.json, images
// <dataset_dir>/vlpart/pascal_part/VOCdevkit/VOC2010/JPEGImages/<file_name>. Every category is "obj:part" (the
// reference asserts exactly one ':'); no "_(" stripping.
#include "coco_part_dataset.h"

namespace m2sa::data {

namespace fs = std::filesystem;

std::unique_ptr<TrainDataset> make_pascal_part_dataset(const fs::path& dataset_dir, const SemSegOptions& options,
                                                       const QuestionLists& lists, SkipReport* report) {
  const fs::path root = dataset_dir / "vlpart" / "pascal_part";
  const fs::path path = root / "train.json";
  CocoIndex index = read_coco_json(path, "pascal_part", options.skip_bad, report);
  std::unordered_map<int64_t, detail::PartName> names;
  for (const auto& [id, raw] : index.categories) {
    const std::size_t b = raw.find_first_not_of(" \t\n\r");
    const std::size_t e = raw.find_last_not_of(" \t\n\r");
    const std::string name = b == std::string::npos ? "" : raw.substr(b, e - b + 1);
    const std::size_t colon = name.find(':');
    if (colon == std::string::npos || name.find(':', colon + 1) != std::string::npos)
      fail(path.string(), ": category ", id, " \"", raw, "\" is not \"obj:part\"");
    names[id] = {name.substr(0, colon), name.substr(colon + 1)};
  }
  const fs::path images = root / "VOCdevkit" / "VOC2010" / "JPEGImages";
  return std::make_unique<detail::CocoPartDataset>(
      "pascal_part", std::move(index), std::move(names), [images](const std::string& f) { return images / f; },
      options, lists);
}

}  // namespace m2sa::data
