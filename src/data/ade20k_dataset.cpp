// ADE20K (ADEChallengeData2016): <dataset_dir>/ade20k/images/training/*.jpg with labels
// <dataset_dir>/ade20k/annotations/training/*.png. Label remap of the reference: 0 -> 255, then -1, 254 -> 255
// (so stored 1..150 become classes 0..149 and both 0 and 255 are ignored).
#include <ATen/ATen.h>

#include "entry_json.h"
#include "label_map_dataset.h"

namespace m2sa::data {

namespace fs = std::filesystem;

std::vector<std::string> read_ade20k_classes(const fs::path& path) {
  const detail::json j = detail::parse_json_file(path);
  if (!j.is_array()) fail(path.string(), ": expected a JSON list of class names");
  std::vector<std::string> out;
  for (std::size_t i = 0; i < j.size(); ++i) {
    if (!j[i].is_string()) fail(path.string(), ": entry ", i, " is not a string");
    out.push_back(j[i].get<std::string>());
  }
  return out;
}

std::unique_ptr<TrainDataset> make_ade20k_dataset(const fs::path& dataset_dir, const SemSegOptions& options,
                                                  const QuestionLists& lists) {
  const fs::path root = dataset_dir / "ade20k";
  const fs::path classes_path =
      options.ade20k_classes.empty() ? root / "ade20k_classes.json" : options.ade20k_classes;
  std::error_code ec;
  if (!fs::exists(classes_path, ec))
    fail("ade20k: class list ", classes_path.string(),
         " not found; copy configs/datasets/ade20k_classes.json from the m2sa repository there, or set the data "
         "config field \"ade20k_classes\"");
  std::vector<std::string> classes = read_ade20k_classes(classes_path);
  std::vector<detail::LabelMapItem> items;
  for (const fs::path& img : detail::list_files(root / "images" / "training", ".jpg", "ade20k"))
    items.push_back({img, root / "annotations" / "training" / (img.stem().string() + ".png")});
  auto remap = [](at::Tensor& label) {
    // stored 0 or 255 -> 255; v -> v - 1 otherwise
    at::Tensor ignore = label.eq(0).logical_or(label.eq(255));
    label.sub_(1).masked_fill_(ignore, 255);
  };
  return std::make_unique<detail::LabelMapDataset>("ade20k", std::move(classes), std::move(items), remap, options,
                                                   lists);
}

}  // namespace m2sa::data
