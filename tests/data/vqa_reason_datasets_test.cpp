#include "m2sa/data/vqa_reason_datasets.h"

#include <gtest/gtest.h>

#include "data_test_util.h"
#include "m2sa/data/eval_datasets.h"
#include "test_util.h"

namespace m2sa::data {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

TEST(VqaDataset, LlavaConversationsAsTheReferenceBuildsThem) {
  test::TempDir dir("m2sa_vqa");
  json data = json::array(
      {{{"id", "1"}, {"image", "000000000001.jpg"},
        {"conversations", {{{"from", "human"}, {"value", "What is this?\n<image>"}}, {{"from", "gpt"}, {"value", "A cat."}},
                           {{"from", "human"}, {"value", "Color?"}}, {{"from", "gpt"}, {"value", "Black."}}}}},
       {{"id", "2"}, {"image", "000000000001.jpg"},
        {"conversations", {{{"from", "gpt"}, {"value", "Hello."}}, {{"from", "human"}, {"value", "<image>\nHi?"}},
                           {{"from", "gpt"}, {"value", "Hi."}}}}}});
  test::write_json(dir.path() / "llava_dataset/llava_instruct_150k.json", data);
  test::write_solid_image(dir.path() / "coco/train2017/000000000001.jpg", 4, 5);
  VqaDataset ds(dir.path());
  ASSERT_EQ(ds.size(), 2);
  Rng rng(0);
  Sample s = *ds.get(0, rng);
  ASSERT_EQ(s.conversations.size(), 1u);
  ASSERT_EQ(s.conversations[0].size(), 2u);
  EXPECT_EQ(s.conversations[0][0].user, "<image>\nWhat is this?");  // <image> moved to the front
  EXPECT_EQ(s.conversations[0][0].assistant, "A cat.");
  EXPECT_EQ(s.conversations[0][1].user, "Color?");
  EXPECT_EQ(s.masks.sizes(), (std::vector<int64_t>{0, 4, 5}));
  Sample t = *ds.get(1, rng);  // the leading gpt message is dropped
  ASSERT_EQ(t.conversations[0].size(), 1u);
  EXPECT_EQ(t.conversations[0][0].user, "<image>\nHi?");

  json bad = data;
  bad[1]["conversations"][2]["from"] = "human";
  test::write_json(dir.path() / "llava_dataset/llava_instruct_150k.json", bad);
  const std::string err = test::error_of([&] { VqaDataset v(dir.path()); });
  EXPECT_NE(err.find("llava_instruct_150k.json: entry 1: message 1 is from \"human\"; roles must alternate"), std::string::npos)
      << err;
  SkipReport report;
  VqaDataset skipped(dir.path(), "llava_instruct_150k", true, &report);
  EXPECT_EQ(skipped.size(), 1);
  EXPECT_EQ(report.count("llava_instruct_150k"), 1);
}

json labelme(const std::vector<std::pair<std::string, std::vector<std::array<double, 2>>>>& shapes,
             const std::vector<std::string>& text, bool is_sentence) {
  json s = json::array();
  for (const auto& [label, pts] : shapes) {
    json p = json::array();
    for (const auto& q : pts) p.push_back({q[0], q[1]});
    s.push_back({{"label", label}, {"points", p}, {"shape_type", "polygon"}});
  }
  return {{"shapes", s}, {"text", text}, {"is_sentence", is_sentence}};
}

TEST(ReasonSeg, MaskFromLabelMePolygons) {
  test::TempDir dir("m2sa_reason");
  const fs::path p = dir.path() / "a.json";
  // A big target, an "ignore" region inside it (drawn after: smaller area), and a "flag" shape (skipped).
  test::write_json(p, labelme({{"target", {{{0, 0}, {7.9, 0}, {7.9, 5.5}, {0, 5.5}}}},
                               {"ignore_this", {{{2, 2}, {4, 2}, {4, 3}, {2, 3}}}},
                               {"flag", {{{6, 0}, {7, 0}, {7, 1}}}}},
                              {"the thing you sit on"}, true));
  ReasonSegAnnotation a = read_reason_seg_json(p, 7, 9);
  EXPECT_TRUE(a.is_sentence);
  ASSERT_EQ(a.sentences.size(), 1u);
  // Points are cut to int (7.9 -> 7, 5.5 -> 5): the target covers x 0..7, y 0..5 (outline + fill).
  at::Tensor expect = at::zeros({7, 9}, at::kByte);
  expect.slice(0, 0, 6).slice(1, 0, 8).fill_(1);
  expect.slice(0, 2, 4).slice(1, 2, 5).fill_(255);
  EXPECT_TRUE(at::equal(a.mask, expect)) << a.mask;
  // Not UTF-8: read as cp1252 like the reference (0x92 is a right single quote there).
  test::write_text(p, std::string("{\"shapes\": [], \"text\": [\"it\x92s\"], \"is_sentence\": false}"));
  a = read_reason_seg_json(p, 2, 2);
  EXPECT_EQ(a.sentences[0], "it\xe2\x80\x99s");
}

TEST(ReasonSeg, EvalAndTraining) {
  test::TempDir dir("m2sa_reason_eval");
  const fs::path val = dir.path() / "reason_seg/ReasonSeg/val";
  test::write_solid_image(val / "x.jpg", 6, 6);
  test::write_json(val / "x.json", labelme({{"t", {{{1, 1}, {3, 1}, {3, 3}, {1, 3}}}}, {"ignore", {{{5, 5}, {5, 5}, {5, 5}}}}},
                                           {" What can hold water? ", "second"}, true));
  test::write_solid_image(val / "y.jpg", 6, 6);
  test::write_json(val / "y.json", labelme({{"t", {{{0, 0}, {1, 0}, {1, 1}}}}}, {"Cat"}, false));
  auto ds = make_eval_dataset("reasonseg/val", dir.path());
  ASSERT_EQ(ds->size(), 2);
  Sample x = ds->get(0);
  ASSERT_EQ(x.conversations.size(), 1u);  // only the first sentence
  EXPECT_EQ(x.conversations[0][0].user, "<image>\n What can hold water? Please output segmentation mask.");
  EXPECT_EQ(x.conversations[0][0].assistant, "[SEG].");
  EXPECT_EQ(x.masks.size(0), 1);
  EXPECT_EQ(x.masks.sum().item<int64_t>(), 9);
  ASSERT_TRUE(x.ignore.defined());
  EXPECT_EQ(x.ignore[5][5].item<int>(), 1);
  Sample y = make_eval_dataset("ReasonSeg|val", dir.path())->get(1);
  EXPECT_EQ(y.conversations[0][0].user, "<image>\n What is Cat in this image? Please output segmentation mask.");

  // Training reader: explanatory answers for listed images.
  const fs::path train = dir.path() / "reason_seg/ReasonSeg/train";
  test::write_solid_image(train / "x.jpg", 6, 6);
  test::write_json(train / "x.json", labelme({{"t", {{{1, 1}, {3, 1}, {3, 3}, {1, 3}}}}}, {"s1", "s2", "s3", "s4"}, true));
  test::write_json(dir.path() / "reason_seg/ReasonSeg/explanatory/train.json",
                   json::array({{{"image", "x.jpg"}, {"query", "q"}, {"outputs", "Because."}}}));
  ReasonSegTrainDataset tr(dir.path(), "ReasonSeg|train", 0.5, 3, compose_question_lists({"reason_seg"}, true));
  int text_only = 0, with_seg = 0;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    Rng rng(seed);
    Sample s = *tr.get(0, rng);
    ASSERT_EQ(s.conversations.size(), 3u);
    const std::string& a = s.conversations[0][0].assistant;
    if (s.masks.size(0) == 0) {
      ++text_only;
      EXPECT_EQ(a, "Because.");
    } else {
      ++with_seg;
      EXPECT_EQ(s.masks.size(0), 3);
      EXPECT_NE(a.find("[SEG]"), std::string::npos);
    }
  }
  EXPECT_NEAR(text_only / 200.0, 0.5, 0.1);
  EXPECT_GT(with_seg, 0);
}

TEST(EvalDatasets, UnknownSplitsListTheAcceptedForms) {
  test::TempDir dir("m2sa_eval");
  for (const std::string split : {"vall", "mmr/test/bogus", "refcoco", "foo/val", "reasonseg/train", "MultiPartReasonSeg|val",
                                  "a|b|c|d"}) {
    const std::string err = test::error_of([&] { make_eval_dataset(split, dir.path()); });
    EXPECT_NE(err.find("unknown evaluation split \"" + split + "\""), std::string::npos) << split << ": " << err;
    EXPECT_NE(err.find("refcoco/testA"), std::string::npos) << err;
  }
  // A known split whose file is missing says which file.
  const std::string err = test::error_of([&] { make_eval_dataset("test/part", dir.path()); });
  EXPECT_NE(err.find("MMR_test_part_only.json: does not exist"), std::string::npos) << err;
}

}  // namespace
}  // namespace m2sa::data
