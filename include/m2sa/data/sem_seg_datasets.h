#pragma once
// The semantic-segmentation family (MMR:utils/sem_seg_dataset.py, ../shared/spec/M2SA.md sections 2.3, 3.2):
// label-map datasets (ADE20K, COCO-Stuff, Mapillary Vistas v2.0) and COCO-format part datasets (PACO-LVIS,
// PASCAL-Part). Each sample: up to num_classes_per_sample x num_classes_per_question = 3 x 3 classes (label maps)
// or annotations (COCO format), spread over <= 3 questions by allocate_class, each question a SHORT template
// over "a, b and c" and an ANSWER / SINGLE_ANSWER (separate) / MULTI_ANSWER (joint) answer (templates.h).
//
// Class lists: ADE20K and COCO-Stuff names are data files, not code. They ship in the repository as
// configs/datasets/ade20k_classes.json and configs/datasets/cocostuff_classes.txt (the reference's files, same
// formats), and are looked up (1) at the path the data config gives (`ade20k_classes` / `cocostuff_classes`,
// relative to the config file), else (2) in the dataset folder: <dataset_dir>/ade20k/ade20k_classes.json and
// <dataset_dir>/cocostuff/cocostuff_classes.txt. The reference opens them relative to the working directory
// (trap 15); we never do. Mapillary's list is <dataset_dir>/mapillary/config_v2.0.json (labels[].readable,
// lowercased), as in the reference.
//
// Masks are `label == class_id` for each sampled id. (The reference looks the id up again by *name* with
// list.index, which picks the first class of a duplicated name; ADE20K and COCO-Stuff names are unique, so this is
// the same there.) Label remaps of the reference: ADE20K 0 -> 255 then -1 (so 255 stays 255); COCO-Stuff classes
// whose name contains "-" -> 255; Mapillary none. A label map with no class left draws again (std::nullopt).
// The reference's training loss ignores no pixel, so these samples carry no `ignore` map.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "m2sa/data/dataset.h"
#include "m2sa/data/templates.h"

namespace m2sa::data {

struct SemSegOptions {
  int num_classes_per_sample = 3;    // questions per sample
  int num_classes_per_question = 3;  // targets per question
  std::filesystem::path ade20k_classes;     // empty: <dataset_dir>/ade20k/ade20k_classes.json
  std::filesystem::path cocostuff_classes;  // empty: <dataset_dir>/cocostuff/cocostuff_classes.txt
  bool skip_bad = false;
};

// Class-list files.
std::vector<std::string> read_ade20k_classes(const std::filesystem::path& json_path);    // JSON list of names
std::vector<std::string> read_cocostuff_classes(const std::filesystem::path& txt_path);  // "id: name" lines, first skipped
std::vector<std::string> read_mapillary_classes(const std::filesystem::path& config_json);

// Label-map datasets. Items are listed at construction (sorted file names).
std::unique_ptr<TrainDataset> make_ade20k_dataset(const std::filesystem::path& dataset_dir, const SemSegOptions& options,
                                                  const QuestionLists& lists);
std::unique_ptr<TrainDataset> make_cocostuff_dataset(const std::filesystem::path& dataset_dir,
                                                     const SemSegOptions& options, const QuestionLists& lists);
std::unique_ptr<TrainDataset> make_mapillary_dataset(const std::filesystem::path& dataset_dir,
                                                     const SemSegOptions& options, const QuestionLists& lists);

// COCO-format part datasets (PACO-LVIS: vlpart/paco/annotations/paco_lvis_v1_train.json, images coco/<file_name>;
// PASCAL-Part: vlpart/pascal_part/train.json, images vlpart/pascal_part/VOCdevkit/VOC2010/JPEGImages/<file_name>).
// Category "obj:part" -> "obj part" or "the part of the obj" (p = 0.5), plain "obj" -> "obj"; PACO drops "_(...)"
// suffixes. Masks via COCO annToMask (polygons, compressed or uncompressed RLE). An image without annotations draws
// again. The annotation JSON is read once and kept compact (no JSON tree in memory).
std::unique_ptr<TrainDataset> make_paco_lvis_dataset(const std::filesystem::path& dataset_dir,
                                                      const SemSegOptions& options, const QuestionLists& lists,
                                                      SkipReport* report = nullptr);
std::unique_ptr<TrainDataset> make_pascal_part_dataset(const std::filesystem::path& dataset_dir,
                                                       const SemSegOptions& options, const QuestionLists& lists,
                                                       SkipReport* report = nullptr);

}  // namespace m2sa::data
