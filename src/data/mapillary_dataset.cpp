// Mapillary Vistas v2.0: <dataset_dir>/mapillary/config_v2.0.json (labels[].readable, lowercased),
// labels <dataset_dir>/mapillary/training/v2.0/labels/*.png (palette PNGs: the palette index is the class),
// images <dataset_dir>/mapillary/training/images/*.jpg. No remap. If two classes share a readable name, each keeps
// its own mask here (the reference would use the first one's id for both).
#include "entry_json.h"
#include "label_map_dataset.h"

namespace m2sa::data {

namespace fs = std::filesystem;

std::vector<std::string> read_mapillary_classes(const fs::path& path) {
  const detail::json j = detail::parse_json_file(path);
  const std::string where = path.string();
  std::vector<std::string> out;
  try {
    const detail::json& labels = detail::need_array(j, "labels", where);
    for (std::size_t i = 0; i < labels.size(); ++i)
      out.push_back(lower(detail::need_string(labels[i], "readable", where + ": labels[" + std::to_string(i) + "]")));
  } catch (const BadEntry& e) {
    fail(e.what());
  }
  if (out.empty()) fail(where, ": no labels");
  return out;
}

std::unique_ptr<TrainDataset> make_mapillary_dataset(const fs::path& dataset_dir, const SemSegOptions& options,
                                                     const QuestionLists& lists) {
  const fs::path root = dataset_dir / "mapillary";
  std::vector<std::string> classes = read_mapillary_classes(root / "config_v2.0.json");
  std::vector<detail::LabelMapItem> items;
  for (const fs::path& label : detail::list_files(root / "training" / "v2.0" / "labels", ".png", "mapillary"))
    items.push_back({root / "training" / "images" / (label.stem().string() + ".jpg"), label});
  return std::make_unique<detail::LabelMapDataset>("mapillary", std::move(classes), std::move(items),
                                                   [](at::Tensor&) {}, options, lists);
}

}  // namespace m2sa::data
