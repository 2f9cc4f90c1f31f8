#pragma once
// Private: the shared implementation of the COCO-format part datasets (PACO-LVIS, PASCAL-Part).
#include <functional>

#include "m2sa/data/coco_json.h"
#include "m2sa/data/sem_seg_datasets.h"

namespace m2sa::data::detail {

struct PartName {
  std::string object;
  std::string part;  // empty for an object category
};

class CocoPartDataset : public TrainDataset {
 public:
  CocoPartDataset(std::string name, CocoIndex index, std::unordered_map<int64_t, PartName> names,
                  std::function<std::filesystem::path(const std::string& file_name)> image_path, SemSegOptions options,
                  QuestionLists lists);
  const std::string& name() const override { return name_; }
  int64_t size() const override { return static_cast<int64_t>(index_.images.size()); }
  std::optional<Sample> get(int64_t index, Rng& rng) const override;

 private:
  std::string name_;
  CocoIndex index_;
  std::unordered_map<int64_t, PartName> names_;
  std::function<std::filesystem::path(const std::string&)> image_path_;
  SemSegOptions options_;
  QuestionLists lists_;
};

}  // namespace m2sa::data::detail
