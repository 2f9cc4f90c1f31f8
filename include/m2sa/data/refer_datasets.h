#pragma once
// Referring segmentation: RefCOCO, RefCOCO+, RefCOCOg, RefCLEF (MMR:utils/refer.py, refer_seg_dataset.py and
// the refer branch of dataset.py's ValDataset), plus RefCOCOm (eval only).
//
// Layout (M2SA.md section 3.2): <dataset_dir>/refer_seg/<ds>/refs(<splitBy>).p (a Python 2 pickle, read with the
// data-only unpickler: protocols 0 and 2) and <ds>/instances.json; splitBy "umd" for refcocog, "unc" otherwise.
// Images: refer_seg/images/mscoco/images/train2014/<file_name>, RefCLEF refer_seg/images/saiapr_tc-12/<file_name>.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "m2sa/data/coco_json.h"
#include "m2sa/data/dataset.h"
#include "m2sa/data/templates.h"

namespace m2sa::data {

struct Ref {
  int64_t ref_id = 0;
  int64_t ann_id = 0;
  int64_t image_id = 0;
  int64_t category_id = 0;
  std::string split;
  std::vector<std::string> sentences;  // sentences[].sent
};

// The REFER api, reduced to what the datasets use.
class ReferApi {
 public:
  // dataset: "refcoco", "refcoco+", "refcocog", "refclef"; split_by: "unc", "umd", "google", ... (file refs(<split_by>).p).
  ReferApi(const std::filesystem::path& refer_seg_dir, const std::string& dataset, const std::string& split_by,
           bool skip_bad = false, SkipReport* report = nullptr);

  const std::string& dataset() const { return dataset_; }
  const std::vector<Ref>& refs() const { return refs_; }
  const CocoIndex& instances() const { return instances_; }
  const std::filesystem::path& image_dir() const { return image_dir_; }

  // REFER.getRefIds(split=...): "train" / "val" exact; "test" any split containing "test"; "testA"/"testB"/"testC"
  // a split containing that letter; "testAB"/"testBC"/"testAC" exact. Anything else is an error.
  std::vector<const Ref*> refs_in_split(const std::string& split) const;

 private:
  std::string dataset_;
  std::filesystem::path refs_path_;
  std::filesystem::path image_dir_;
  std::vector<Ref> refs_;
  CocoIndex instances_;
};

// Per image of a split: the image and its refs in file order. Images are ordered by ascending image id (the
// reference uses Python set order, which only affects the order of evaluation items, not the scores).
struct ReferImage {
  const CocoImage* image = nullptr;
  std::vector<const Ref*> refs;
};
std::vector<ReferImage> refer_images(const ReferApi& api, const std::string& split);

struct ReferOptions {
  int num_classes_per_sample = 3;
  int num_classes_per_question = 3;
  bool skip_bad = false;
};

// Training (ReferSegDataset, train split): up to 9 sentences of the image's refs, allocate_class over <= 3
// questions, class_question templates over the sentences; masks from each ref's annotation (polygons or RLE;
// empty segmentation -> zeros).
class ReferTrainDataset : public TrainDataset {
 public:
  ReferTrainDataset(const std::filesystem::path& dataset_dir, const std::string& dataset, ReferOptions options,
                    QuestionLists lists, SkipReport* report = nullptr);
  const std::string& name() const override { return api_->dataset(); }
  int64_t size() const override { return static_cast<int64_t>(images_.size()); }
  std::optional<Sample> get(int64_t index, Rng& rng) const override;

 private:
  std::unique_ptr<ReferApi> api_;
  std::vector<ReferImage> images_;
  ReferOptions options_;
  QuestionLists lists_;
};

// Evaluation ("refcoco|unc|val" & co.): one item per image, one conversation per sentence (sent.strip().lower()):
// "<image>\n What is {sent} in this image? Please output segmentation mask." -> "[SEG].".
// `multi` ("multirefcoco|unc|val"): consecutive sentences grouped 6, 5, 4, 6, 5, 4, ... into one question
// "What is a, b and c in this image? ..." -> "[SEG], [SEG] and [SEG]."; a group of one sentence is answered
// "[SEG]" without a period (the reference's quirk, kept).
class ReferEvalDataset : public EvalDataset {
 public:
  ReferEvalDataset(const std::filesystem::path& dataset_dir, const std::string& dataset, const std::string& split_by,
                   const std::string& split, bool multi, bool skip_bad = false, SkipReport* report = nullptr);
  const std::string& name() const override { return name_; }
  int64_t size() const override { return static_cast<int64_t>(images_.size()); }
  Sample get(int64_t index) const override;

 private:
  std::unique_ptr<ReferApi> api_;
  std::vector<ReferImage> images_;
  bool multi_;
  std::string name_;
};

// RefCOCOm (eval): refer_seg/RefCOCOm/annotations/<json_name>, a list of {img_name, segment_id, sentences[{sent}]};
// images refer_seg/images/mscoco/images/train2014/<img_name>; mask PNG <segment_id>.png looked up in
// refer_seg/RefCOCOm/masks/ (the README's folder) and then refer_seg/Refcocom/masks/ (the folder the reference
// code opens; trap 15). Mask = (gray == 255), as the reference's gray/255 then .int() gives; one conversation per
// sentence, all with that mask.
class RefCocomEvalDataset : public EvalDataset {
 public:
  RefCocomEvalDataset(const std::filesystem::path& dataset_dir, const std::string& json_name, bool skip_bad = false,
                      SkipReport* report = nullptr);
  const std::string& name() const override { return name_; }
  int64_t size() const override { return static_cast<int64_t>(items_.size()); }
  Sample get(int64_t index) const override;

 private:
  struct Item {
    int64_t index = 0;
    std::string img_name;
    std::string segment_id;
    std::vector<std::string> sentences;
  };
  std::filesystem::path refer_seg_dir_;
  std::filesystem::path json_path_;
  std::vector<Item> items_;
  std::string name_;
};

}  // namespace m2sa::data
