#include "label_map_dataset.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "m2sa/data/image_files.h"

namespace m2sa::data::detail {

namespace fs = std::filesystem;

std::vector<fs::path> list_files(const fs::path& dir, const std::string& ext, const std::string& dataset) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail(dataset, ": folder ", dir.string(), " does not exist");
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (e.is_regular_file() && name.size() > ext.size() && name.compare(name.size() - ext.size(), ext.size(), ext) == 0)
      out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

LabelMapDataset::LabelMapDataset(std::string name, std::vector<std::string> classes, std::vector<LabelMapItem> items,
                                 std::function<void(at::Tensor&)> remap, SemSegOptions options, QuestionLists lists)
    : name_(std::move(name)),
      classes_(std::move(classes)),
      items_(std::move(items)),
      remap_(std::move(remap)),
      options_(std::move(options)),
      lists_(std::move(lists)) {
  M2SA_CHECK(!items_.empty(), name_, ": no images found");
  M2SA_CHECK(!classes_.empty(), name_, ": empty class list");
}

std::optional<Sample> LabelMapDataset::get(int64_t index, Rng& rng) const {
  const LabelMapItem& item = items_.at(static_cast<std::size_t>(index));
  const std::string where = name_ + ": " + item.label.string();
  at::Tensor label = read_label_png(item.label, name_);
  const ImageSize size = probe_image(item.image, where);
  if (size.height != label.size(0) || size.width != label.size(1))
    bad_entry(where, ": label map is ", label.size(0), "x", label.size(1), " (h x w) but image ", item.image.string(),
              " is ", size.height, "x", size.width);
  remap_(label);

  // np.unique(label) without 255
  std::vector<int64_t> present;
  {
    at::Tensor counts = at::bincount(label.flatten().to(at::kLong), {}, 256);
    const int64_t* c = counts.data_ptr<int64_t>();
    for (int64_t v = 0; v < 255; ++v)
      if (c[v] > 0) present.push_back(v);
  }
  if (present.empty()) return std::nullopt;
  for (int64_t v : present)
    if (v >= static_cast<int64_t>(classes_.size()))
      bad_entry(where, ": label value ", v, " (after the remap) has no class; the class list has ", classes_.size(),
                " entries");

  const int64_t max_total = int64_t{options_.num_classes_per_question} * options_.num_classes_per_sample;
  std::vector<int64_t> sampled;
  if (static_cast<int64_t>(present.size()) >= max_total) {
    for (int64_t i : sample_without_replacement(rng, static_cast<int64_t>(present.size()), max_total))
      sampled.push_back(present[static_cast<std::size_t>(i)]);
  } else {
    sampled = present;
  }
  const auto groups = allocate_class(static_cast<int>(sampled.size()), options_.num_classes_per_sample,
                                     options_.num_classes_per_question, rng);

  Sample s;
  s.dataset = name_;
  s.source = name_ + ":" + item.image.filename().string();
  s.image_path = item.image.string();
  s.height = size.height;
  s.width = size.width;
  std::vector<at::Tensor> masks;
  for (const auto& group : groups) {
    std::vector<std::string> names;
    for (int g : group) {
      const int64_t id = sampled[static_cast<std::size_t>(g)];
      names.push_back(classes_[static_cast<std::size_t>(id)]);
      masks.push_back(label.eq(id).to(at::kByte));
      s.targets.push_back(Target{classes_[static_cast<std::size_t>(id)], classes_[static_cast<std::size_t>(id)], false});
    }
    QuestionAnswer qa = class_question(names, lists_.short_questions, rng);
    s.conversations.push_back({Turn{qa.question, qa.answer}});
  }
  s.masks = at::stack(masks);
  return s;
}

}  // namespace m2sa::data::detail
