#include "m2sa/data/data_config.h"

#include <algorithm>
#include <cmath>

namespace m2sa::data {

namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kFamilies = {"sem_seg", "refer_seg", "vqa", "reason_seg", "mmr"};
const std::vector<std::string> kSemSeg = {"ade20k", "cocostuff", "mapillary", "paco_lvis", "pascal_part"};
const std::vector<std::string> kReferSeg = {"refclef", "refcoco", "refcoco+", "refcocog"};

std::string list_of(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

void check_names(const std::vector<std::string>& names, const std::vector<std::string>& allowed, const std::string& where,
                 const char* field) {
  for (const auto& n : names)
    if (std::find(allowed.begin(), allowed.end(), n) == allowed.end())
      fail(where, ": ", field, ": unknown name \"", n, "\"; expected one of ", list_of(allowed));
  for (std::size_t i = 0; i < names.size(); ++i)
    for (std::size_t j = i + 1; j < names.size(); ++j)
      if (names[i] == names[j]) fail(where, ": ", field, ": \"", names[i], "\" is listed twice");
}

}  // namespace

void DataConfig::validate(const std::string& where) const {
  if (datasets.empty()) fail(where, ": datasets: empty");
  check_names(datasets, kFamilies, where, "datasets");
  if (sample_rates.size() != datasets.size())
    fail(where, ": sample_rates has ", sample_rates.size(), " values but datasets has ", datasets.size(), " entries");
  double total = 0;
  for (double r : sample_rates) {
    if (!std::isfinite(r) || r < 0) fail(where, ": sample_rates: ", r, " is not a non-negative number");
    total += r;
  }
  if (!(total > 0)) fail(where, ": sample_rates: all rates are zero");
  auto uses = [&](const char* f) { return std::find(datasets.begin(), datasets.end(), f) != datasets.end(); };
  if (uses("sem_seg")) {
    if (sem_seg_data.empty()) fail(where, ": sem_seg_data: empty but sem_seg is in datasets");
    check_names(sem_seg_data, kSemSeg, where, "sem_seg_data");
  }
  if (uses("refer_seg")) {
    if (refer_seg_data.empty()) fail(where, ": refer_seg_data: empty but refer_seg is in datasets");
    check_names(refer_seg_data, kReferSeg, where, "refer_seg_data");
  }
  if (uses("vqa") && vqa_data.empty()) fail(where, ": vqa_data: empty");
  if (uses("mmr") && mmr_data.empty()) fail(where, ": mmr_data: empty");
  if (uses("reason_seg") && reason_seg_data.find('|') == std::string::npos)
    fail(where, ": reason_seg_data: \"", reason_seg_data, "\" should look like \"ReasonSeg|train\"");
  if (num_classes_per_sample < 1 || num_classes_per_sample > 64)
    fail(where, ": num_classes_per_sample: ", num_classes_per_sample, " is not in 1..64");
  if (num_classes_per_question < 1 || num_classes_per_question > 64)
    fail(where, ": num_classes_per_question: ", num_classes_per_question, " is not in 1..64");
  if (explanatory != -1 && (explanatory < 0 || explanatory > 1))
    fail(where, ": explanatory: ", explanatory, " is not a probability (or -1 to disable)");
  if (max_redraws < 1) fail(where, ": max_redraws: must be >= 1");
  if (dataset_dir.empty()) fail(where, ": dataset_dir: empty");
}

DataConfig DataConfig::from_json(const JsonReader& r) {
  DataConfig c;
  c.dataset_dir = r.get_or<std::string>("dataset_dir", c.dataset_dir.string());
  c.datasets = r.get_or("datasets", c.datasets);
  for (auto& d : c.datasets)
    if (d == "multi_part_reason_seg") d = "mmr";  // the reference's name
  c.sample_rates = r.get_or("sample_rates", c.sample_rates);
  c.sem_seg_data = r.get_or("sem_seg_data", c.sem_seg_data);
  c.refer_seg_data = r.get_or("refer_seg_data", c.refer_seg_data);
  c.vqa_data = r.get_or("vqa_data", c.vqa_data);
  c.reason_seg_data = r.get_or("reason_seg_data", c.reason_seg_data);
  c.mmr_data = r.get_or("mmr_data", c.mmr_data);
  c.explanatory = r.get_or("explanatory", c.explanatory);
  c.num_classes_per_sample = r.get_or("num_classes_per_sample", c.num_classes_per_sample);
  c.num_classes_per_question = r.get_or("num_classes_per_question", c.num_classes_per_question);
  c.use_expand_question_list = r.get_or("use_expand_question_list", c.use_expand_question_list);
  const fs::path config_dir = fs::path(r.file()).parent_path();
  auto resolve = [&](const std::string& p) -> fs::path {
    if (p.empty()) return {};
    fs::path path(p);
    return fs::absolute(path.is_relative() && !config_dir.empty() ? config_dir / path : path);
  };
  c.ade20k_classes = resolve(r.get_or<std::string>("ade20k_classes", ""));
  c.cocostuff_classes = resolve(r.get_or<std::string>("cocostuff_classes", ""));
  c.skip_bad = r.get_or("skip_bad", c.skip_bad);
  c.max_redraws = r.get_or("max_redraws", c.max_redraws);
  c.seed = r.get_or<uint64_t>("seed", c.seed);
  r.finish();
  c.validate(r.file());
  return c;
}

json DataConfig::to_json() const {
  return {{"dataset_dir", dataset_dir.string()},
          {"datasets", datasets},
          {"sample_rates", sample_rates},
          {"sem_seg_data", sem_seg_data},
          {"refer_seg_data", refer_seg_data},
          {"vqa_data", vqa_data},
          {"reason_seg_data", reason_seg_data},
          {"mmr_data", mmr_data},
          {"explanatory", explanatory},
          {"num_classes_per_sample", num_classes_per_sample},
          {"num_classes_per_question", num_classes_per_question},
          {"use_expand_question_list", use_expand_question_list},
          {"ade20k_classes", ade20k_classes.string()},
          {"cocostuff_classes", cocostuff_classes.string()},
          {"skip_bad", skip_bad},
          {"max_redraws", max_redraws},
          {"seed", seed}};
}

}  // namespace m2sa::data
