#include "m2sa/data/eval_datasets.h"

#include "m2sa/data/mmr_dataset.h"
#include "m2sa/data/refer_datasets.h"
#include "m2sa/data/vqa_reason_datasets.h"

namespace m2sa::data {

namespace fs = std::filesystem;

namespace {

std::vector<std::string> split_on(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::size_t p = 0;
  while (true) {
    const std::size_t q = s.find(sep, p);
    out.push_back(s.substr(p, q == std::string::npos ? std::string::npos : q - p));
    if (q == std::string::npos) break;
    p = q + 1;
  }
  return out;
}

bool is_refer(const std::string& ds) {
  return ds == "refcoco" || ds == "refcoco+" || ds == "refcocog" || ds == "refclef";
}

[[noreturn]] void unknown(const std::string& split, const std::string& why) {
  fail("unknown evaluation split \"", split, "\"", why.empty() ? "" : " (" + why + ")", "; accepted:\n", eval_split_help());
}

std::unique_ptr<EvalDataset> refer(const fs::path& dir, std::string ds, const std::string& split_by,
                                   const std::string& split, const EvalOptions& o, const std::string& full) {
  bool multi = false;
  if (ds.rfind("multi", 0) == 0) {
    multi = true;
    ds = ds.substr(5);
  }
  if (!is_refer(ds)) unknown(full, "\"" + ds + "\" is not refcoco, refcoco+, refcocog or refclef");
  const std::string by = split_by.empty() ? (ds == "refcocog" ? "umd" : "unc") : split_by;
  return std::make_unique<ReferEvalDataset>(dir, ds, by, split, multi, o.skip_bad, o.report);
}

}  // namespace

std::string eval_split_help() {
  return "  val | mmr/val, test/obj, test/part, test/mixed (MMR/MMR_*.json), mmr/<file>.json\n"
         "  refcoco/val, refcoco/testA, refcoco/testB, refcoco+/val|testA|testB, refcocog/val|test, refclef/val|testA|testB|test\n"
         "  <ds>/<splitBy>/<split> (e.g. refcocog/google/val); prefix \"multi\" for grouped questions (multirefcoco/val)\n"
         "  refcocom/<annotation name> (refer_seg/RefCOCOm/annotations/<name>.json)\n"
         "  reasonseg/val, reasonseg/test\n"
         "  reference forms: MultiPartReasonSeg|val (+ json_name), refcoco|unc|val, multirefcoco|unc|val, RefCOCOm|x (+ json_name), "
         "ReasonSeg|val";
}

std::unique_ptr<EvalDataset> make_eval_dataset(const std::string& split, const fs::path& dir, const EvalOptions& o) {
  auto mmr = [&](const std::string& json) {
    return std::make_unique<MmrEvalDataset>(dir, json, o.skip_bad, o.report);
  };
  // The reference's "|" forms.
  if (split.find('|') != std::string::npos) {
    const auto parts = split_on(split, '|');
    if (parts.size() == 2) {
      if (parts[0] == "MultiPartReasonSeg") {
        if (o.json_name.empty()) unknown(split, "MultiPartReasonSeg needs json_name, e.g. MMR_val.json");
        return mmr(o.json_name);
      }
      if (parts[0] == "RefCOCOm") {
        if (o.json_name.empty()) unknown(split, "RefCOCOm needs json_name");
        return std::make_unique<RefCocomEvalDataset>(dir, o.json_name, o.skip_bad, o.report);
      }
      if (parts[0] == "ReasonSeg") return std::make_unique<ReasonSegEvalDataset>(dir, parts[1]);
      unknown(split, "");
    }
    if (parts.size() == 3) return refer(dir, parts[0], parts[1], parts[2], o, split);
    unknown(split, "");
  }
  const auto parts = split_on(split, '/');
  if (split == "val" || split == "mmr/val") return mmr("MMR_val.json");
  const std::string rest = parts[0] == "mmr" ? split.substr(4) : split;
  if (rest == "test/obj") return mmr("MMR_test_obj_only.json");
  if (rest == "test/part") return mmr("MMR_test_part_only.json");
  if (rest == "test/mixed") return mmr("MMR_test_mixed.json");
  if (parts[0] == "mmr" && parts.size() == 2 && parts[1].size() > 5 &&
      parts[1].compare(parts[1].size() - 5, 5, ".json") == 0)
    return mmr(parts[1]);
  if (parts[0] == "mmr") unknown(split, "");
  if (parts[0] == "refcocom" && parts.size() == 2 && !parts[1].empty()) {
    const std::string name = parts[1].size() > 5 && parts[1].compare(parts[1].size() - 5, 5, ".json") == 0 ? parts[1] : parts[1] + ".json";
    return std::make_unique<RefCocomEvalDataset>(dir, name, o.skip_bad, o.report);
  }
  if (parts[0] == "reasonseg" && parts.size() == 2 && (parts[1] == "val" || parts[1] == "test"))
    return std::make_unique<ReasonSegEvalDataset>(dir, parts[1]);
  const std::string ds = parts[0].rfind("multi", 0) == 0 ? parts[0].substr(5) : parts[0];
  if (is_refer(ds)) {
    if (parts.size() == 2) return refer(dir, parts[0], "", parts[1], o, split);
    if (parts.size() == 3) return refer(dir, parts[0], parts[1], parts[2], o, split);
  }
  unknown(split, "");
}

}  // namespace m2sa::data
