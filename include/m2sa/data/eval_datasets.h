#pragma once
// Evaluation splits by name (ValDataset semantics, ../shared/spec/M2SA.md sections 3.4 and 5.1). One item = one
// image with all of its questions; the prompts are the reference's validation prompts (teacher-forced protocol).
//
// Split names:
//   MMR (dataset_dir/MMR/...):  "val" | "mmr/val" -> MMR_val.json; "test/obj" | "mmr/test/obj" -> MMR_test_obj_only.json;
//                               "test/part" -> MMR_test_part_only.json; "test/mixed" -> MMR_test_mixed.json;
//                               "mmr/<file>.json" -> any other file in MMR/.
//   refer (refer_seg/<ds>/):    "<ds>/<split>" with ds in refcoco, refcoco+, refcocog, refclef and split in val, test,
//                               testA, testB, testC (refcocog uses refs(umd).p, the others refs(unc).p);
//                               "<ds>/<splitBy>/<split>" picks another refs file (e.g. "refcocog/google/val");
//                               a "multi" prefix ("multirefcoco/val") groups sentences 6/5/4 per question.
//   RefCOCOm:                   "refcocom/<name>" -> refer_seg/RefCOCOm/annotations/<name>.json (or <name> as given
//                               if it ends in .json).
//   ReasonSeg:                  "reasonseg/val", "reasonseg/test".
// The reference's own strings are accepted too: "MultiPartReasonSeg|val" (with json_name), "refcoco|unc|val",
// "multirefcoco|unc|val", "RefCOCOm|x" (with json_name), "ReasonSeg|val".
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "m2sa/data/dataset.h"

namespace m2sa::data {

struct EvalOptions {
  bool skip_bad = false;         // malformed entries found while loading are dropped and counted
  SkipReport* report = nullptr;  // where load-time skips are recorded
  std::string json_name;         // for the reference's "MultiPartReasonSeg|val" / "RefCOCOm|..." forms
};

// Throws m2sa::Error for an unknown split, listing the accepted forms.
std::unique_ptr<EvalDataset> make_eval_dataset(const std::string& split, const std::filesystem::path& dataset_dir,
                                               const EvalOptions& options = {});

// The accepted forms, for help texts.
std::string eval_split_help();

}  // namespace m2sa::data
