// What `m2sa infer --out DIR` writes, checked by reading the files back (no model needed: predictions are built by
// hand), and the --batch JSONL reader.
#include "m2sa/infer/output_writer.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <string>

#include "m2sa/core/error.h"
#include "m2sa/core/json_reader.h"
#include "m2sa/infer/batch_input.h"
#include "m2sa/io/coco_mask.h"
#include "m2sa/vision/image_io.h"
#include "m2sa/vision/mask_image.h"
#include "test_util.h"

namespace m2sa {
namespace {

namespace fs = std::filesystem;
using infer::Prediction;
using infer::Target;

using test::error_of;

Target make_target(int64_t index, const std::string& phrase, const at::Tensor& logits) {
  Target t;
  t.index = index;
  t.phrase = phrase;
  t.text_before = "and " + phrase;
  t.logits = logits;
  t.mask = logits.gt(0);
  t.area = t.mask.sum().item<int64_t>();
  return t;
}

// A prediction with three targets on a 37 x 53 image: a random blob, a rectangle, an empty mask.
Prediction make_prediction() {
  at::manual_seed(7);
  const int64_t h = 37, w = 53;
  Prediction p;
  p.question = "Which parts?";
  p.answer = "Sure, the leg [SEG], the Seat! [SEG] and nothing [SEG].";
  p.reference_text = "A chat ... ASSISTANT: " + p.answer;
  p.finish_reason = "eos";
  p.height = h;
  p.width = w;
  p.targets.push_back(make_target(0, "the leg", at::randn({h, w})));
  at::Tensor rect = at::full({h, w}, -1.0);
  rect.slice(0, 5, 12).slice(1, 20, 31).fill_(2.0);
  p.targets.push_back(make_target(1, "the Seat!", rect));
  p.targets.back().box = {20, 5, 11, 7};
  p.targets.push_back(make_target(2, "", at::full({h, w}, -3.0)));
  p.timings.total_s = 1.5;
  return p;
}

TEST(InferOutputs, FilesReadBackEqualThePrediction) {
  test::TempDir tmp;
  const Prediction p = make_prediction();
  const at::Tensor rgb = at::randint(0, 256, {p.height, p.width, 3}).to(at::kByte);
  infer::OutputOptions o;
  o.image_path = "imgs/photo.v2.jpg";
  o.extra = json{{"precision", "fp32"}};
  const infer::WrittenOutputs w = infer::write_prediction(tmp / "out", rgb, p, o);
  ASSERT_EQ(w.masks.size(), 3u);
  EXPECT_EQ(w.masks[0].filename(), "mask_00_the-leg.png");
  EXPECT_EQ(w.masks[1].filename(), "mask_01_the-seat.png");
  EXPECT_EQ(w.masks[2].filename(), "mask_02.png");
  EXPECT_EQ(w.json, tmp / "out" / "result.json");
  EXPECT_EQ(w.overlay, tmp / "out" / "overlay.png");

  const json j = read_json_file(w.json);
  EXPECT_EQ(j.at("answer"), p.answer);
  EXPECT_EQ(j.at("question"), p.question);
  EXPECT_EQ(j.at("image"), "imgs/photo.v2.jpg");
  EXPECT_EQ(j.at("image_size").at("height"), p.height);
  EXPECT_EQ(j.at("image_size").at("width"), p.width);
  EXPECT_EQ(j.at("num_targets"), 3);
  EXPECT_EQ(j.at("finish_reason"), "eos");
  EXPECT_EQ(j.at("precision"), "fp32");
  EXPECT_EQ(j.at("overlay_file"), "overlay.png");
  EXPECT_DOUBLE_EQ(j.at("timings").at("total_s").get<double>(), 1.5);
  ASSERT_EQ(j.at("targets").size(), 3u);
  for (std::size_t k = 0; k < 3; ++k) {
    const json& t = j.at("targets")[k];
    const Target& target = p.targets[k];
    EXPECT_EQ(t.at("index"), static_cast<int64_t>(k));
    EXPECT_EQ(t.at("phrase"), target.phrase);
    EXPECT_EQ(t.at("mask_file"), w.masks[k].filename().string());
    EXPECT_EQ(t.at("area"), target.area);
    EXPECT_EQ(t.at("bbox"), json::array({target.box[0], target.box[1], target.box[2], target.box[3]}));
    // The PNG reads back as the mask.
    const at::Tensor png = vision::mask_from_png(read_image_rgb(w.masks[k]));
    EXPECT_TRUE(png.equal(target.mask)) << "mask " << k;
    // The compressed RLE decodes to the mask.
    const json& seg = t.at("segmentation");
    EXPECT_TRUE(seg.at("counts").is_string());
    EXPECT_EQ(seg.at("size"), json::array({p.height, p.width}));
    const at::Tensor decoded = coco::ann_to_mask(seg, p.height, p.width, "result.json target");
    EXPECT_TRUE(decoded.to(at::kBool).equal(target.mask)) << "RLE " << k;
  }
  EXPECT_EQ(j.at("targets")[2].at("area"), 0);
  const at::Tensor overlay = read_image_rgb(w.overlay);
  EXPECT_EQ(overlay.sizes(), rgb.sizes());
  EXPECT_FALSE(overlay.equal(rgb)) << "the overlay should colour the masks";
  // No temp files left.
  for (const auto& e : fs::directory_iterator(tmp / "out"))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();

  // A second prediction with fewer targets into the same folder removes the stale masks, not other files.
  test::write_bytes(tmp / "out" / "notes.txt", "keep");
  Prediction fewer = p;
  fewer.targets.resize(1);
  o.reference_outputs = true;
  const infer::WrittenOutputs w2 = infer::write_prediction(tmp / "out", rgb, fewer, o);
  EXPECT_TRUE(fs::exists(w2.masks[0]));
  EXPECT_FALSE(fs::exists(w.masks[1]));
  EXPECT_FALSE(fs::exists(w.masks[2]));
  EXPECT_TRUE(fs::exists(tmp / "out" / "notes.txt"));
  ASSERT_EQ(w2.reference.size(), 2u);
  EXPECT_EQ(w2.reference[0].filename(), "photo_mask_0.jpg");
  EXPECT_EQ(w2.reference[1].filename(), "photo_masked_img_0.jpg");
  EXPECT_EQ(read_json_file(w2.json).at("reference_files").size(), 2u);
}

TEST(InferOutputs, AnswerWithoutSegWritesJsonAndPlainOverlay) {
  test::TempDir tmp;
  Prediction p = make_prediction();
  p.targets.clear();
  p.answer = "I cannot see a chair.";
  const at::Tensor rgb = at::full({p.height, p.width, 3}, 90, at::kByte);
  const infer::WrittenOutputs w = infer::write_prediction(tmp / "o", rgb, p);
  EXPECT_TRUE(w.masks.empty());
  const json j = read_json_file(w.json);
  EXPECT_EQ(j.at("num_targets"), 0);
  EXPECT_TRUE(j.at("targets").empty());
  EXPECT_NE(j.at("note").get<std::string>().find("no [SEG]"), std::string::npos);
  EXPECT_TRUE(read_image_rgb(w.overlay).equal(rgb));
  // A wrong image for the prediction is refused, naming the directory.
  const std::string e = error_of([&] { infer::write_prediction(tmp / "o", rgb.slice(0, 1), p); });
  EXPECT_NE(e.find("writing the outputs to"), std::string::npos) << e;
  EXPECT_NE(e.find("[37, 53, 3]"), std::string::npos) << e;
}

TEST(InferOutputs, FileNames) {
  EXPECT_EQ(infer::sanitize_file_name("The chair's Leg!"), "the-chair-s-leg");
  EXPECT_EQ(infer::sanitize_file_name("  ../../etc/passwd "), "etc-passwd");
  EXPECT_EQ(infer::sanitize_file_name("\xc3\xa9t\xc3\xa9 caf\xc3\xa9"), "t-caf");
  EXPECT_EQ(infer::sanitize_file_name("!!!"), "");
  EXPECT_EQ(infer::sanitize_file_name("alpha beta gamma delta", 12), "alpha-beta");
  EXPECT_LE(infer::sanitize_file_name(std::string(200, 'x')).size(), 48u);
  Target t;
  t.index = 3;
  t.phrase = "the Lamp";
  EXPECT_EQ(infer::mask_file_name(t, 4), "mask_03_the-lamp.png");
  EXPECT_EQ(infer::mask_file_name(t, 120), "mask_003_the-lamp.png");
  t.phrase = "";
  EXPECT_EQ(infer::mask_file_name(t, 4), "mask_03.png");
  // Invalid UTF-8 in generated text does not break the JSON.
  const std::string s = infer::dump_json(json{{"answer", std::string("a\xff b")}}, -1);
  EXPECT_NE(s.find("a\xef\xbf\xbd b"), std::string::npos) << s;  // U+FFFD
}

TEST(InferBatchInput, IntegerIdsMustFitInt64) {
  // An id of 2^64-1 used to become the folder "-1".
  test::TempDir tmp;
  const fs::path f = tmp / "batch.jsonl";
  test::write_bytes(f, "{\"image\": \"a.png\", \"question\": \"q\", \"id\": 18446744073709551615}\n"
                       "{\"image\": \"a.png\", \"question\": \"q\", \"id\": -3}\n");
  const infer::BatchFile b = infer::read_batch_file(f);
  ASSERT_EQ(b.errors.size(), 1u);
  EXPECT_EQ(b.errors[0].line, 1);
  EXPECT_NE(b.errors[0].message.find("\"id\": 18446744073709551615 is out of range"), std::string::npos)
      << b.errors[0].message;
  ASSERT_EQ(b.items.size(), 1u);
  EXPECT_EQ(b.items[0].id, "-3");
}

TEST(InferBatchInput, GoodAndBadLines) {
  test::TempDir tmp;
  const fs::path f = tmp / "batch.jsonl";
  test::write_bytes(f,
                    "{\"image\": \"a.png\", \"question\": \"What is this?\"}\n"  // 1
                    "\n"                                                         // 2 blank
                    "{\"image\": \"/abs/b.jpg\", \"question\": \"Where?\", \"id\": \"Case 7\"}\r\n"  // 3
                    "{\"image\": \"a.png\", \"question\": \"x\"\n"                // 4 bad JSON
                    "[1, 2]\n"                                                   // 5 not an object
                    "{\"image\": \"a.png\"}\n"                                   // 6 no question
                    "{\"image\": 3, \"question\": \"q\"}\n"                      // 7 image not a string
                    "{\"image\": \"a.png\", \"question\": \"q\", \"colour\": 1}\n"  // 8 unknown field
                    "{\"image\": \"a.png\", \"question\": \"q\", \"id\": \"Case 7\"}\n"  // 9 duplicate id
                    "{\"image\": \"a.png\", \"question\": \"q\", \"id\": 12}\n"  // 10
                    "{\"image\": \"a.png\", \"question\": \"q\", \"id\": \"case-7\"}\n"  // 11 same folder as 3
                    "{\"image\": \"a.png\", \"question\": \"q\", \"id\": [1]}\n");  // 12 bad id
  const infer::BatchFile b = infer::read_batch_file(f);
  ASSERT_EQ(b.items.size(), 3u);
  EXPECT_EQ(b.items[0].line, 1);
  EXPECT_EQ(b.items[0].folder, "0001");
  EXPECT_EQ(b.items[0].image, tmp.path() / "a.png");
  EXPECT_EQ(b.items[0].question, "What is this?");
  EXPECT_EQ(b.items[1].line, 3);
  EXPECT_EQ(b.items[1].id, "Case 7");
  EXPECT_EQ(b.items[1].folder, "case-7");
  EXPECT_EQ(b.items[1].image, fs::path("/abs/b.jpg"));
  EXPECT_EQ(b.items[2].id, "12");
  EXPECT_EQ(b.items[2].folder, "12");
  const std::vector<std::pair<int64_t, std::string>> expected{
      {4, "not valid JSON"},       {5, "expected a JSON object"}, {6, "\"question\" must be a non-empty string"},
      {7, "\"image\" must be a non-empty string"}, {8, "unknown field \"colour\""}, {9, "duplicate \"id\" \"Case 7\""},
      {11, "is already used by line 3"}, {12, "\"id\" must be a string or an integer"}};
  ASSERT_EQ(b.errors.size(), expected.size());
  for (std::size_t k = 0; k < expected.size(); ++k) {
    EXPECT_EQ(b.errors[k].line, expected[k].first);
    EXPECT_NE(b.errors[k].message.find(f.string() + ":" + std::to_string(expected[k].first) + ": "), std::string::npos)
        << b.errors[k].message;
    EXPECT_NE(b.errors[k].message.find(expected[k].second), std::string::npos) << b.errors[k].message;
  }
  // The image root can be given.
  EXPECT_EQ(infer::read_batch_file(f, "/data").items[0].image, fs::path("/data/a.png"));
  // File-level errors.
  EXPECT_NE(error_of([&] { infer::read_batch_file(tmp / "missing.jsonl"); }).find("missing.jsonl: batch file not found"),
            std::string::npos);
  test::write_bytes(tmp / "empty.jsonl", "\n  \n");
  EXPECT_NE(error_of([&] { infer::read_batch_file(tmp / "empty.jsonl"); }).find("has no items"), std::string::npos);
}

}  // namespace
}  // namespace m2sa
