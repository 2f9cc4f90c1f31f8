#include "m2sa/data/mmr_dataset.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <sstream>

#include "data_test_util.h"
#include "m2sa/data/eval_datasets.h"
#include "m2sa/data/collate.h"
#include "m2sa/io/coco_mask.h"
#include "m2sa/vision/image_io.h"
#include "models/m2sa/m2sa_test_util.h"
#include "test_util.h"

namespace m2sa::data {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr int64_t kH = 6, kW = 8;

// Target j of question k: a single pixel at (row j, column k), so every mask is distinct and identifiable.
at::Tensor target_mask(int k, int j) {
  at::Tensor m = at::zeros({kH, kW}, at::kByte);
  m[j][k] = 1;
  return m;
}

json ann(int k, int j, int64_t h = kH, int64_t w = kW) {
  at::Tensor m = at::zeros({h, w}, at::kByte);
  m[j][k] = 1;
  return {{"bbox", {k, j, 1, 1}},
          {"segmentation", coco::rle_to_json(coco::encode(m))},
          {"image_id", 1},
          {"category_name", k % 2 ? "mug:handle" : "mug"},
          {"category_id", 3},
          {"sorted_category_id", 2}};
}

// One entry with questions k = 0..n-1; question k has sizes[k] targets and a text answer naming k.
json entry(const std::vector<int>& sizes, const std::string& file_name = "train2017/000000000001.jpg") {
  json e = {{"file_name", file_name},
            {"height", kH},
            {"width", kW},
            {"image_id", 1},
            {"not_exhaustive_category_ids", json::array()},
            {"neg_category_ids", json::array()},
            {"coco_url", "http://x"},
            {"annotations", json::array({ann(0, 0)})},
            {"questions", json::array()},
            {"answers", json::array()},
            {"text_answers", json::array()},
            {"raw_answers", json::array()}};
  for (std::size_t k = 0; k < sizes.size(); ++k) {
    e["questions"].push_back("Q" + std::to_string(k) + " what is here?");
    json answers = json::array();
    std::string text = "A" + std::to_string(k) + ":";
    for (int j = 0; j < sizes[k]; ++j) {
      answers.push_back(ann(static_cast<int>(k), j));
      text += " t" + std::to_string(j) + " {seg}";
    }
    e["answers"].push_back(answers);
    e["text_answers"].push_back(text + ".");
    e["raw_answers"].push_back("raw");
  }
  return e;
}

struct MmrFixture {
  test::TempDir dir{"m2sa_mmr"};
  fs::path root() const { return dir.path(); }
  void image(const std::string& file_name, int64_t h = kH, int64_t w = kW) {
    test::write_solid_image(root() / "refer_seg/images/mscoco/images" / file_name, h, w);
  }
  void file(const std::string& name, const json& entries) { test::write_json(root() / "MMR" / name, entries); }
};

QuestionLists lists() { return compose_question_lists({"sem_seg", "refer_seg", "vqa", "mmr"}, true); }

TEST(MmrDataset, TrainPairsEachQuestionWithItsOwnAnswerAndMasks) {
  MmrFixture f;
  f.image("train2017/000000000001.jpg");
  f.file("MMR_train.json", json::array({entry({1, 2, 1, 3})}));
  MmrTrainDataset ds(f.root(), MmrOptions{}, lists());
  ASSERT_EQ(ds.size(), 1);
  std::set<std::string> first_questions;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    Rng rng(seed);
    Sample s = *ds.get(0, rng);
    ASSERT_EQ(s.conversations.size(), 3u);  // 4 questions -> 3 sampled, distinct
    EXPECT_EQ(s.height, kH);
    EXPECT_EQ(s.width, kW);
    int64_t mask_index = 0;
    std::set<std::string> seen;
    for (const Dialog& d : s.conversations) {
      ASSERT_EQ(d.size(), 1u);
      const Turn& t = d[0];
      ASSERT_EQ(t.user.rfind("<image>\nQ", 0), 0u) << t.user;
      const int k = t.user[9] - '0';
      EXPECT_TRUE(seen.insert(t.user.substr(0, 11)).second);
      // Trap 8 fixed: the answer is the text answer of the same question, with [SEG] and no template.
      EXPECT_EQ(t.assistant.substr(0, 3), "A" + std::to_string(k) + ":") << t.user << " / " << t.assistant;
      const int64_t n_seg = static_cast<int64_t>(count_of(t.assistant, "[SEG]"));
      for (int j = 0; j < n_seg; ++j, ++mask_index)
        EXPECT_TRUE(at::equal(s.masks[mask_index], target_mask(k, j))) << "question " << k << " target " << j;
      // The question template is one of the 7 LONG(+EXPAND_LONG) entries.
      bool known = false;
      for (const auto& tmpl : lists().long_questions)
        known |= py_format(tmpl, {{"sent", "Q" + std::to_string(k) + " what is here?"}}) == t.user;
      EXPECT_TRUE(known) << t.user;
    }
    EXPECT_EQ(s.masks.size(0), mask_index);
    EXPECT_EQ(static_cast<int64_t>(s.targets.size()), mask_index);
    first_questions.insert(s.conversations[0][0].user.substr(0, 11));
  }
  EXPECT_EQ(first_questions.size(), 4u) << "question order is random";
  // Fewer than 3 questions: all of them, in order.
  MmrFixture g;
  g.image("train2017/000000000001.jpg");
  g.file("MMR_train.json", json::array({entry({2, 1})}));
  MmrTrainDataset small(g.root(), MmrOptions{}, lists());
  Rng rng(0);
  Sample s = *small.get(0, rng);
  ASSERT_EQ(s.conversations.size(), 2u);
  EXPECT_EQ(s.conversations[1][0].assistant, "A1: t0 [SEG].");
  EXPECT_EQ(s.masks.size(0), 3);
}

TEST(MmrDataset, EvalPromptsAndTheExtraPeriod) {
  MmrFixture f;
  f.image("val2017/000000000001.jpg");
  json e = entry({2, 1}, "val2017/000000000001.jpg");
  e["questions"][0] = "  Q0 spaced?  ";
  f.file("MMR_val.json", json::array({e}));
  auto ds = make_eval_dataset("val", f.root());
  ASSERT_EQ(ds->size(), 1);
  Sample s = ds->get(0);
  ASSERT_EQ(s.conversations.size(), 2u);
  EXPECT_EQ(s.conversations[0][0].user, "<image>\n Q0 spaced? Please output segmentation mask.");
  // Trap 17: "{}.".format(text_answer) appends a period even after one.
  EXPECT_EQ(s.conversations[0][0].assistant, "A0: t0 [SEG] t1 [SEG]..");
  EXPECT_EQ(s.masks.size(0), 3);
  EXPECT_TRUE(at::equal(s.masks[2], target_mask(1, 0)));
  EXPECT_EQ(make_eval_dataset("mmr/val", f.root())->size(), 1);
}

// Captures spdlog output while alive.
class MmrLogCapture {
 public:
  MmrLogCapture() : sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(out_)) {
    spdlog::default_logger()->sinks().push_back(sink_);
  }
  ~MmrLogCapture() {
    auto& sinks = spdlog::default_logger()->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }
  std::string str() const { return out_.str(); }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
};

// A question whose {seg} count differs from its mask count: the reference's training dataset draws another sample
// (the question is left out here), its validation scores it with zip(gt, pred) over the GT count (the eval sample
// keeps every mask and says how many belong to each question). Both warn, naming the entry; neither is a bad entry.
TEST(MmrDataset, SegCountMismatchIsLeftOutOfTrainingAndScoredInEvaluation) {
  MmrFixture f;
  f.image("train2017/000000000001.jpg");
  json bad = entry({1, 2, 1});
  bad["text_answers"][1] = "A1: only one {seg}.";
  f.file("MMR_train.json", json::array({entry({1}), bad}));
  f.file("MMR_val.json", json::array({bad}));
  const std::string named = "MMR_train.json: entry 1 (train2017/000000000001.jpg): question 1: text_answers[1] has 1 "
                            "{seg} but answers[1] has 2 masks";
  {
    MmrLogCapture log;
    SkipReport report;
    MmrTrainDataset ds(f.root(), MmrOptions{}, lists(), &report);
    EXPECT_EQ(report.count(), 0);
    EXPECT_NE(log.str().find(named), std::string::npos) << log.str();
    EXPECT_NE(log.str().find("left out of training"), std::string::npos) << log.str();
    Rng rng(0);
    const Sample s = *ds.get(1, rng);
    EXPECT_EQ(s.conversations.size(), 2u);  // the two good questions
    EXPECT_EQ(s.masks.size(0), 2);
    EXPECT_TRUE(s.masks_per_conversation.empty());
  }
  MmrLogCapture log;
  const auto val = make_eval_dataset("val", f.root());
  EXPECT_NE(log.str().find("MMR_val.json: entry 0 (train2017/000000000001.jpg): question 1: text_answers[1] has 1 "
                           "{seg} but answers[1] has 2 masks"),
            std::string::npos)
      << log.str();
  EXPECT_NE(log.str().find("scored as the reference scores it"), std::string::npos) << log.str();
  ASSERT_EQ(val->size(), 1);
  const Sample s = val->get(0);
  ASSERT_EQ(s.conversations.size(), 3u);
  EXPECT_EQ(s.masks.size(0), 4);
  EXPECT_EQ(s.masks_per_conversation, (std::vector<int64_t>{1, 2, 1}));
  // Masks in GT order: question 1's second mask is the single pixel (row 1, column 1).
  EXPECT_TRUE(at::equal(s.masks[2], target_mask(1, 1)));
}

// A COCO-style JPEG stored sideways with EXIF orientation 6 (cv2.imread turns it upright): the MMR masks are at the
// upright size, the reader's size probe and the decoder agree on it, and collate's size check passes.
TEST(MmrDataset, ExifRotatedJpegFitsItsMasksAndCollates) {
  MmrFixture f;
  // Stored as kW rows x kH columns; orientation 6 (rotate 90 degrees clockwise) shows kH x kW.
  std::vector<uchar> buf;
  ASSERT_TRUE(cv::imencode(".jpg", cv::Mat(static_cast<int>(kW), static_cast<int>(kH), CV_8UC3, cv::Scalar(30, 90, 150)),
                           buf));
  const std::string plain(buf.begin(), buf.end());
  // APP1 "Exif", little-endian TIFF, IFD0 with one entry: Orientation (0x0112), SHORT, 1 value = 6.
  const std::string tiff("II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0\x06\0\0\0\0\0\0\0", 26);
  const std::string payload = std::string("Exif\0\0", 6) + tiff;
  const std::string app1 = std::string("\xFF\xE1\0", 3) + static_cast<char>(payload.size() + 2) + payload;
  const fs::path image = f.root() / "refer_seg/images/mscoco/images/val2017/000000000002.jpg";
  fs::create_directories(image.parent_path());
  test::write_bytes(image, plain.substr(0, 2) + app1 + plain.substr(2));
  f.file("MMR_val.json", json::array({entry({2}, "val2017/000000000002.jpg")}));
  const auto val = make_eval_dataset("val", f.root());
  const Sample s = val->get(0);
  EXPECT_EQ(s.height, kH);
  EXPECT_EQ(s.width, kW);
  const at::Tensor rgb = read_image_rgb(s.image_path);
  EXPECT_EQ(rgb.size(0), kH);
  EXPECT_EQ(rgb.size(1), kW);
  const Tokenizer tok = Tokenizer::load(test::repo_root() / "configs" / "tokenizer" / "tokenizer.model");
  const M2SATrainBatch b = collate_samples({s}, tok, CollateConfig::for_model(test::tiny_config(), false));
  EXPECT_EQ(b.gt_masks.at(0).size(1), kH);
  EXPECT_EQ(b.gt_masks.at(0).size(2), kW);
}

TEST(MmrDataset, BadDataNamesFileAndEntry) {
  MmrFixture f;
  f.image("train2017/000000000001.jpg");
  // RLE size disagrees with the image (found when the sample is built).
  json e = entry({1});
  e["answers"][0][0] = ann(0, 0, kH + 1, kW);
  // Missing image.
  json missing = entry({1}, "train2017/000000000099.jpg");
  // Malformed: answers missing.
  json malformed = entry({1});
  malformed.erase("answers");
  f.file("MMR_train.json", json::array({e, missing}));
  MmrTrainDataset ds(f.root(), MmrOptions{}, lists());
  Rng rng(0);
  std::string err = test::error_of([&] { ds.get(0, rng); });
  EXPECT_NE(err.find("MMR_train.json: entry 0 (train2017/000000000001.jpg): mask 0 (mug): RLE size 7x8 (h x w) disagrees "
                     "with the image, 6x8"),
            std::string::npos)
      << err;
  EXPECT_THROW(ds.get(0, rng), BadEntry);
  err = test::error_of([&] { ds.get(1, rng); });
  EXPECT_NE(err.find("entry 1 (train2017/000000000099.jpg): image "), std::string::npos) << err;
  EXPECT_NE(err.find("000000000099.jpg does not exist"), std::string::npos) << err;
  f.file("MMR_val.json", json::array({malformed}));
  err = test::error_of([&] { make_eval_dataset("val", f.root()); });
  EXPECT_NE(err.find("MMR_val.json: entry 0 (train2017/000000000001.jpg): missing field \"answers\""), std::string::npos) << err;
  f.file("MMR_val.json", json::object({{"a", 1}}));
  err = test::error_of([&] { make_eval_dataset("val", f.root()); });
  EXPECT_NE(err.find("expected a list of per-image entries"), std::string::npos) << err;
  test::write_text(f.root() / "MMR" / "MMR_val.json", "[{\"file_name\": ");
  err = test::error_of([&] { make_eval_dataset("val", f.root()); });
  EXPECT_NE(err.find("MMR_val.json: invalid JSON"), std::string::npos) << err;
  // A corrupt compressed RLE string is caught while loading.
  json corrupt = entry({1});
  corrupt["answers"][0][0]["segmentation"]["counts"] = "bad counts";
  f.file("MMR_val.json", json::array({corrupt}));
  err = test::error_of([&] { make_eval_dataset("val", f.root()); });
  EXPECT_NE(err.find("answers[0][0]: segmentation: compressed RLE string has character ' '"), std::string::npos) << err;
}

TEST(MmrDataset, DropsUnusedFieldsWhileParsing) {
  // "annotations" and "raw_answers" may hold anything: they are never read.
  MmrFixture f;
  f.image("train2017/000000000001.jpg");
  json e = entry({1});
  e["annotations"] = json::array({{{"segmentation", "garbage"}}});
  e["raw_answers"] = 5;
  f.file("MMR_test_mixed.json", json::array({e}));
  auto ds = make_eval_dataset("test/mixed", f.root());
  EXPECT_EQ(ds->get(0).masks.size(0), 1);
}

}  // namespace
}  // namespace m2sa::data
