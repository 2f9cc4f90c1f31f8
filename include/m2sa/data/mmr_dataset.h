#pragma once
// MMR JSON (../shared/spec/M2SA.md section 3.1): <dataset_dir>/MMR/MMR_{train,val,test_obj_only,test_part_only,
// test_mixed}.json, images under <dataset_dir>/refer_seg/images/mscoco/images/<file_name>.
//
// The file is parsed in one streaming pass that keeps only what the code uses (file_name, questions,
// text_answers, answers[k][j].segmentation / category_name); "annotations", "raw_answers" & co. are dropped while
// parsing, so the 154k-question train file does not sit in memory as a JSON tree.
//
// Pairing: question k goes with text_answers[k] and answers[k]; the j-th "{seg}" of text_answers[k] is
// answers[k][j]. (The reference's training reader pairs sampled questions with answers[0..2] instead: trap 8,
// fixed here.) A question whose "{seg}" count differs from len(answers[k]) is bad data: the reference training
// reader silently draws another sample and its validation reader silently mis-pairs masks; here it is a BadEntry
// error, or, with skip_bad, the question is dropped at load time and counted (an entry left without questions is
// dropped too).
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "m2sa/data/dataset.h"
#include "m2sa/data/templates.h"

namespace m2sa::data {

struct MmrTarget {
  int64_t rle_h = 0, rle_w = 0;
  // Compressed RLE strings; usually one. A list of RLE dicts (pycocotools decodes it to [H, W, n], which the
  // reference sums over n) gives several, merged by union. Uncompressed counts are re-encoded at load.
  std::vector<std::string> counts;
  std::string category_name;  // "mug" or "mug:handle"
};

struct MmrQuestion {
  std::string question;
  std::string text_answer;  // with "{seg}" placeholders
  std::vector<MmrTarget> targets;
};

struct MmrEntry {
  int64_t index = 0;  // position in the JSON list (for messages)
  std::string file_name;
  std::vector<MmrQuestion> questions;
};

struct MmrFile {
  std::filesystem::path path;
  std::vector<MmrEntry> entries;
  int64_t num_questions() const;
};

// Reads and validates the structure of an MMR JSON file (not the RLE payloads, which are checked when a sample
// is built). Errors are BadEntry naming the file and entry; with skip_bad they are recorded in `report`.
MmrFile read_mmr_json(const std::filesystem::path& path, bool skip_bad = false, SkipReport* report = nullptr);

struct MmrOptions {
  std::string json_name = "MMR_train.json";
  int num_questions_per_sample = 3;  // num_classes_per_sample
  bool skip_bad = false;
};

// Training reader (MultiPartReasonSegDataset): per sample up to 3 distinct questions in random order, each with a
// random LONG(+EXPAND_LONG) template around the question, answer = text_answers[k] with "[SEG]" (no template, no
// extra period), masks = answers[k] decoded in order.
class MmrTrainDataset : public TrainDataset {
 public:
  MmrTrainDataset(const std::filesystem::path& dataset_dir, MmrOptions options, QuestionLists lists,
                  SkipReport* report = nullptr);
  const std::string& name() const override { return name_; }
  int64_t size() const override { return static_cast<int64_t>(file_.entries.size()); }
  std::optional<Sample> get(int64_t index, Rng& rng) const override;

 private:
  std::filesystem::path image_root_;
  MmrOptions options_;
  QuestionLists lists_;
  MmrFile file_;
  std::string name_;
};

// Evaluation reader (ValDataset "MultiPartReasonSeg|val" + --val_json_name): one item per entry with all of its
// questions. Prompt "<image>\n {question.strip()} Please output segmentation mask." and answer
// "{text_answer with [SEG]}." -- the period is appended even when the answer already ends with one (trap 17): we
// keep the reference's text because it defines the published protocol (teacher-forced scoring).
class MmrEvalDataset : public EvalDataset {
 public:
  MmrEvalDataset(const std::filesystem::path& dataset_dir, const std::string& json_name, bool skip_bad = false,
                 SkipReport* report = nullptr);
  const std::string& name() const override { return name_; }
  int64_t size() const override { return static_cast<int64_t>(file_.entries.size()); }
  Sample get(int64_t index) const override;

 private:
  std::filesystem::path image_root_;
  MmrFile file_;
  std::string name_;
};

// Shared by both readers: the masks of `targets` (uint8 [n, H, W]) checked against the image size.
at::Tensor decode_mmr_targets(const std::vector<const MmrTarget*>& targets, int64_t height, int64_t width,
                              const std::string& context);

}  // namespace m2sa::data
