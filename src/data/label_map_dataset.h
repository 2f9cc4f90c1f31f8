#pragma once
// Private: the shared implementation of the label-map datasets (ADE20K, COCO-Stuff, Mapillary).
#include <functional>

#include "m2sa/data/sem_seg_datasets.h"

namespace m2sa::data::detail {

struct LabelMapItem {
  std::filesystem::path image;
  std::filesystem::path label;
};

class LabelMapDataset : public TrainDataset {
 public:
  // `remap` rewrites the stored values in place (uint8 [H, W]) into class ids, 255 = ignored.
  LabelMapDataset(std::string name, std::vector<std::string> classes, std::vector<LabelMapItem> items,
                  std::function<void(at::Tensor&)> remap, SemSegOptions options, QuestionLists lists);
  const std::string& name() const override { return name_; }
  int64_t size() const override { return static_cast<int64_t>(items_.size()); }
  std::optional<Sample> get(int64_t index, Rng& rng) const override;

 private:
  std::string name_;
  std::vector<std::string> classes_;
  std::vector<LabelMapItem> items_;
  std::function<void(at::Tensor&)> remap_;
  SemSegOptions options_;
  QuestionLists lists_;
};

// Sorted regular files of `dir` whose names end with `ext`; an error naming `dataset` if the folder is missing.
std::vector<std::filesystem::path> list_files(const std::filesystem::path& dir, const std::string& ext,
                                              const std::string& dataset);

}  // namespace m2sa::data::detail
