// COCO-Stuff: labels <dataset_dir>/cocostuff/train2017/*.png, images <dataset_dir>/coco/train2017/*.jpg (the
// reference replaces "cocostuff" by "coco" in the label path). Class i is line i+1 of cocostuff_classes.txt
// ("id: name", the first line "0: unlabeled" skipped); classes whose name contains "-" become 255 (ignored).
#include <ATen/ATen.h>

#include <fstream>

#include "entry_json.h"
#include "label_map_dataset.h"

namespace m2sa::data {

namespace fs = std::filesystem;

std::vector<std::string> read_cocostuff_classes(const fs::path& path) {
  std::ifstream in(path);
  if (!in) fail(path.string(), ": cannot open the COCO-Stuff class list");
  std::vector<std::string> out;
  std::string line;
  bool first = true;
  while (std::getline(in, line)) {
    if (first) {  // "0: unlabeled"
      first = false;
      continue;
    }
    line = detail::py_strip(line);
    const std::size_t p = line.rfind(": ");
    out.push_back(p == std::string::npos ? line : line.substr(p + 2));  // line.strip().split(": ")[-1]
  }
  if (out.empty()) fail(path.string(), ": no classes after the first line");
  return out;
}

std::unique_ptr<TrainDataset> make_cocostuff_dataset(const fs::path& dataset_dir, const SemSegOptions& options,
                                                     const QuestionLists& lists) {
  const fs::path classes_path = options.cocostuff_classes.empty()
                                    ? dataset_dir / "cocostuff" / "cocostuff_classes.txt"
                                    : options.cocostuff_classes;
  std::error_code ec;
  if (!fs::exists(classes_path, ec))
    fail("cocostuff: class list ", classes_path.string(),
         " not found; copy configs/datasets/cocostuff_classes.txt from the m2sa repository there, or set the data "
         "config field \"cocostuff_classes\"");
  std::vector<std::string> classes = read_cocostuff_classes(classes_path);
  std::vector<int64_t> ignored;
  for (std::size_t i = 0; i < classes.size(); ++i)
    if (classes[i].find('-') != std::string::npos) ignored.push_back(static_cast<int64_t>(i));
  std::vector<detail::LabelMapItem> items;
  for (const fs::path& label : detail::list_files(dataset_dir / "cocostuff" / "train2017", ".png", "cocostuff"))
    items.push_back({dataset_dir / "coco" / "train2017" / (label.stem().string() + ".jpg"), label});
  auto remap = [ignored](at::Tensor& label) {
    if (ignored.empty()) return;
    at::Tensor lut = at::arange(256, at::kLong);
    for (int64_t i : ignored)
      if (i < 256) lut[i] = 255;
    label.copy_(lut.index_select(0, label.flatten().to(at::kLong)).view_as(label).to(at::kByte));
  };
  return std::make_unique<detail::LabelMapDataset>("cocostuff", std::move(classes), std::move(items), remap, options,
                                                   lists);
}

}  // namespace m2sa::data
