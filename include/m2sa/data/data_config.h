#pragma once
// The training data mix (MMR:train_ds.py flags --dataset, --sample_rates, --sem_seg_data, ...; M2SA.md 3.3).
// Field names follow the reference's flags; lists are JSON lists instead of "a||b" strings.
//
//   {
//     "dataset_dir": "dataset",                       // relative to the working directory, like --dataset_dir
//     "datasets": ["sem_seg", "refer_seg", "vqa", "mmr"],   // "multi_part_reason_seg" is accepted for "mmr"
//     "sample_rates": [2, 9, 2, 6],
//     "sem_seg_data": ["ade20k", "cocostuff", "pascal_part", "paco_lvis", "mapillary"],
//     "refer_seg_data": ["refclef", "refcoco", "refcoco+", "refcocog"],
//     "vqa_data": "llava_instruct_150k",
//     "reason_seg_data": "ReasonSeg|train",
//     "mmr_data": "MMR_train.json",
//     "explanatory": 0.1,
//     "num_classes_per_sample": 3,
//     "num_classes_per_question": 3,
//     "use_expand_question_list": true,
//     "ade20k_classes": "",        // "" = <dataset_dir>/ade20k/ade20k_classes.json; relative paths: config folder
//     "cocostuff_classes": "",     // "" = <dataset_dir>/cocostuff/cocostuff_classes.txt
//     "skip_bad": false,           // skip (and count) bad entries instead of stopping with an error
//     "max_redraws": 100,          // consecutive empty / bad draws for one sample before giving up
//     "seed": 0
//   }
// Every field is optional (the defaults are the M2SA training run); unknown fields are errors.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "m2sa/core/json_reader.h"

namespace m2sa::data {

struct DataConfig {
  std::filesystem::path dataset_dir = "dataset";
  std::vector<std::string> datasets = {"sem_seg", "refer_seg", "vqa", "mmr"};
  std::vector<double> sample_rates = {2, 9, 2, 6};
  std::vector<std::string> sem_seg_data = {"ade20k", "cocostuff", "pascal_part", "paco_lvis", "mapillary"};
  std::vector<std::string> refer_seg_data = {"refclef", "refcoco", "refcoco+", "refcocog"};
  std::string vqa_data = "llava_instruct_150k";
  std::string reason_seg_data = "ReasonSeg|train";
  std::string mmr_data = "MMR_train.json";
  double explanatory = 0.1;
  int num_classes_per_sample = 3;
  int num_classes_per_question = 3;
  bool use_expand_question_list = true;
  std::filesystem::path ade20k_classes;
  std::filesystem::path cocostuff_classes;
  bool skip_bad = false;
  int max_redraws = 100;
  uint64_t seed = 0;

  // Strict: unknown fields, unknown dataset names, rates that do not match the datasets, negative rates... are
  // errors naming the field. Relative class-list paths are resolved against the config file's folder.
  static DataConfig from_json(const JsonReader& r);
  json to_json() const;
  // Checks the invariants (from_json calls it; call it after editing fields by hand).
  void validate(const std::string& where = "data config") const;
};

}  // namespace m2sa::data
