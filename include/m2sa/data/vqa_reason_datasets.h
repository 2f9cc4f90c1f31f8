#pragma once
// LLaVA-Instruct-150K VQA (MMR:utils/vqa_dataset.py) and LISA's ReasonSeg (reason_seg_dataset.py,
// data_processing.py, and the ReasonSeg branch of ValDataset).
#include <filesystem>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "m2sa/data/dataset.h"
#include "m2sa/data/templates.h"

namespace m2sa::data {

// <dataset_dir>/llava_dataset/<vqa_data>.json (a list of {id, image, conversations: [{from, value}]}), images
// <dataset_dir>/coco/train2017/<image>. The conversation is kept as is, except that "<image>" is moved to the front
// of its message followed by "\n" (preprocess_multimodal) and a leading non-human message is dropped; it becomes
// one multi-round Dialog. Roles must alternate human / gpt (the reference asserts). No masks: [0, H, W].
class VqaDataset : public TrainDataset {
 public:
  VqaDataset(const std::filesystem::path& dataset_dir, const std::string& vqa_data = "llava_instruct_150k",
             bool skip_bad = false, SkipReport* report = nullptr);
  const std::string& name() const override { return name_; }
  int64_t size() const override { return static_cast<int64_t>(items_.size()); }
  std::optional<Sample> get(int64_t index, Rng& rng) const override;

 private:
  struct Item {
    int64_t index = 0;
    std::string image;
    Dialog dialog;
  };
  std::filesystem::path image_root_;
  std::filesystem::path json_path_;
  std::vector<Item> items_;
  std::string name_;
};

// One ReasonSeg annotation (get_mask_from_json): the mask drawn from LabelMe polygons (largest first; "flag"
// shapes skipped; a label containing "ignore" draws 255, others 1; cv2.polylines + cv2.fillPoly with points cut to
// int32), the sentences ("text") and is_sentence. JSON that is not UTF-8 is read as cp1252, like the reference.
struct ReasonSegAnnotation {
  at::Tensor mask;  // uint8 [H, W] in {0, 1, 255}
  std::vector<std::string> sentences;
  bool is_sentence = false;
};
ReasonSegAnnotation read_reason_seg_json(const std::filesystem::path& json_path, int64_t height, int64_t width);

// Training ReasonSeg (not in the M2SA default mix). `data` is "ReasonSeg|train" (splits joined by "_").
// explanatory: probability of the text-only explanation answer for images listed in
// reason_seg/<ds>/explanatory/train.json (-1 disables the explanations). Masks: mask == 1 per sampled sentence;
// `ignore` = mask == 255.
class ReasonSegTrainDataset : public TrainDataset {
 public:
  ReasonSegTrainDataset(const std::filesystem::path& dataset_dir, const std::string& data, double explanatory,
                        int num_classes_per_sample, QuestionLists lists);
  const std::string& name() const override { return name_; }
  int64_t size() const override { return static_cast<int64_t>(images_.size()); }
  std::optional<Sample> get(int64_t index, Rng& rng) const override;

 private:
  std::vector<std::filesystem::path> images_;
  std::unordered_map<std::string, std::string> explanations_;  // image file name -> outputs
  double explanatory_;
  int num_classes_per_sample_;
  QuestionLists lists_;
  std::string name_;
};

// Evaluation ("ReasonSeg|val"): <dataset_dir>/reason_seg/ReasonSeg/<split>/*.jpg (sorted). Only the first sentence;
// is_sentence: "<image>\n {sent} Please output segmentation mask.", else "<image>\n What is {sent} in this image?
// Please output segmentation mask."; answer "[SEG].". masks = (mask == 1), ignore = (mask == 255): the metric
// ignores those pixels (intersectionAndUnionGPU with ignore_index 255).
class ReasonSegEvalDataset : public EvalDataset {
 public:
  ReasonSegEvalDataset(const std::filesystem::path& dataset_dir, const std::string& split);
  const std::string& name() const override { return name_; }
  int64_t size() const override { return static_cast<int64_t>(images_.size()); }
  Sample get(int64_t index) const override;

 private:
  std::vector<std::filesystem::path> images_;
  std::string name_;
};

}  // namespace m2sa::data
