#include "m2sa/data/refer_datasets.h"

#include <gtest/gtest.h>

#include "data_test_util.h"
#include "m2sa/data/eval_datasets.h"
#include "m2sa/io/coco_mask.h"
#include "py2_pickle_writer.h"
#include "test_util.h"

namespace m2sa::data {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;
using namespace test::py2;

constexpr int64_t kMaskH = 5, kMaskW = 6;

test::py2::Py ref(int64_t ref_id, int64_t ann_id, int64_t image_id, const std::string& split,
                  const std::vector<std::string>& sents) {
  PyList sentences;
  PyList ids;
  for (std::size_t i = 0; i < sents.size(); ++i) {
    sentences.push_back(D({{"tokens", L({S("x")})}, {"raw", S(sents[i])}, {"sent_id", I(ref_id * 10 + int64_t(i))},
                           {"sent", S(sents[i])}}));
    ids.push_back(I(ref_id * 10 + int64_t(i)));
  }
  return D({{"sent_ids", L(ids)},
            {"file_name", S("COCO_train2014_x.jpg")},
            {"ann_id", I(ann_id)},
            {"ref_id", I(ref_id)},
            {"image_id", I(image_id)},
            {"split", S(split)},
            {"sentences", L(sentences)},
            {"category_id", I(1)}});
}

// Annotation masks: ann 10 = rectangle polygon, ann 11 = compressed RLE list, ann 12 = empty.
at::Tensor mask10() {
  at::Tensor m = at::zeros({kMaskH, kMaskW}, at::kByte);
  m.slice(0, 1, 3).slice(1, 1, 4).fill_(1);
  return m;
}
at::Tensor mask11() {
  at::Tensor m = at::zeros({kMaskH, kMaskW}, at::kByte);
  m[4][5] = 1;
  return m;
}

struct ReferFixture {
  test::TempDir dir{"m2sa_refer"};
  explicit ReferFixture(int protocol = 0, const std::string& ds = "refcoco", const std::string& by = "unc") {
    const fs::path root = dir.path() / "refer_seg" / ds;
    json images = json::array({{{"id", 1}, {"file_name", "COCO_train2014_000000000001.jpg"}, {"height", kMaskH}, {"width", kMaskW}},
                               {{"id", 2}, {"file_name", "COCO_train2014_000000000002.jpg"}, {"height", kMaskH}, {"width", kMaskW}}});
    json anns = json::array(
        {{{"id", 10}, {"image_id", 1}, {"category_id", 1}, {"segmentation", json::parse("[[1,1,4,1,4,3,1,3]]")}},
         {{"id", 11}, {"image_id", 1}, {"category_id", 1},
          {"segmentation", json::array({coco::rle_to_json(coco::encode(mask11()))})}},
         {{"id", 12}, {"image_id", 2}, {"category_id", 1}, {"segmentation", json::array()}}});
    test::write_json(root / "instances.json",
                     {{"images", images}, {"annotations", anns}, {"categories", {{{"id", 1}, {"name", "person"}}}}});
    Py refs = L({ref(0, 10, 1, "train", {"the left man", "man in red"}), ref(1, 11, 1, "train", {"tiny dot"}),
                 ref(2, 12, 2, "testA", {"  Nobody Here "}), ref(3, 10, 1, "testB", {"A", "B", "C", "D", "E", "F", "G"}),
                 ref(4, 11, 1, "val", {"val sentence"})});
    test::write_text(root / ("refs(" + by + ").p"), Py2Pickler(protocol).dumps(refs));
    const fs::path images_dir =
        ds == "refclef" ? dir.path() / "refer_seg/images/saiapr_tc-12" : dir.path() / "refer_seg/images/mscoco/images/train2014";
    test::write_solid_image(images_dir / "COCO_train2014_000000000001.jpg", kMaskH, kMaskW);
    test::write_solid_image(images_dir / "COCO_train2014_000000000002.jpg", kMaskH, kMaskW);
  }
};

TEST(ReferDatasets, SplitsFollowTheReferApi) {
  ReferFixture f(2);
  ReferApi api(f.dir.path() / "refer_seg", "refcoco", "unc");
  EXPECT_EQ(api.refs().size(), 5u);
  EXPECT_EQ(api.refs_in_split("train").size(), 2u);
  EXPECT_EQ(api.refs_in_split("testA").size(), 1u);
  EXPECT_EQ(api.refs_in_split("test").size(), 2u);
  EXPECT_EQ(api.refs_in_split("val").size(), 1u);
  EXPECT_NE(test::error_of([&] { api.refs_in_split("dev"); }).find("unknown split \"dev\""), std::string::npos);
  auto imgs = refer_images(api, "train");
  ASSERT_EQ(imgs.size(), 1u);
  EXPECT_EQ(imgs[0].refs.size(), 2u);
}

TEST(ReferDatasets, TrainingSamplesFromProtocol0And2Pickles) {
  for (int protocol : {0, 2}) {
    ReferFixture f(protocol);
    ReferTrainDataset ds(f.dir.path(), "refcoco", ReferOptions{}, compose_question_lists({"refer_seg"}, true));
    ASSERT_EQ(ds.size(), 1);  // one train image
    for (uint64_t seed = 0; seed < 20; ++seed) {
      Rng rng(seed);
      Sample s = *ds.get(0, rng);
      ASSERT_EQ(s.masks.size(0), 3);  // three sentences, each its own target
      ASSERT_EQ(s.conversations.size(), 3u);
      for (int64_t i = 0; i < 3; ++i) {
        const Target& t = s.targets[static_cast<std::size_t>(i)];
        EXPECT_TRUE(at::equal(s.masks[i], t.phrase == "tiny dot" ? mask11() : mask10())) << t.phrase;
        EXPECT_EQ(t.category, "person");
        EXPECT_NE(s.conversations[static_cast<std::size_t>(i)][0].user.find(t.phrase), std::string::npos);
      }
    }
  }
}

TEST(ReferDatasets, EvalPromptsAndMultiGrouping) {
  ReferFixture f(0);
  auto ds = make_eval_dataset("refcoco/testA", f.dir.path());
  ASSERT_EQ(ds->size(), 1);
  Sample s = ds->get(0);
  ASSERT_EQ(s.conversations.size(), 1u);
  EXPECT_EQ(s.conversations[0][0].user, "<image>\n What is nobody here in this image? Please output segmentation mask.");
  EXPECT_EQ(s.conversations[0][0].assistant, "[SEG].");
  EXPECT_EQ(s.masks.sum().item<int64_t>(), 0) << "empty segmentation -> an empty mask";
  // testB: 7 sentences of one ref. Plain: 7 conversations; multi: groups of 6 and 1.
  Sample plain = make_eval_dataset("refcoco|unc|testB", f.dir.path())->get(0);
  EXPECT_EQ(plain.conversations.size(), 7u);
  EXPECT_EQ(plain.conversations[0][0].user, "<image>\n What is a in this image? Please output segmentation mask.");
  Sample multi = make_eval_dataset("multirefcoco/testB", f.dir.path())->get(0);
  ASSERT_EQ(multi.conversations.size(), 2u);
  EXPECT_EQ(multi.conversations[0][0].user,
            "<image>\n What is a, b, c, d, e and f in this image? Please output segmentation mask.");
  EXPECT_EQ(multi.conversations[0][0].assistant, "[SEG], [SEG], [SEG], [SEG], [SEG] and [SEG].");
  EXPECT_EQ(multi.conversations[1][0].assistant, "[SEG]");  // the reference's group of one has no period
  EXPECT_EQ(multi.masks.size(0), 7);
  EXPECT_TRUE(at::equal(multi.masks[6], mask10()));
  EXPECT_EQ(make_eval_dataset("multirefcoco|unc|testB", f.dir.path())->get(0).conversations.size(), 2u);
}

TEST(ReferDatasets, RefcocogUsesUmdAndRefclefItsImages) {
  ReferFixture g(2, "refcocog", "umd");
  EXPECT_EQ(make_eval_dataset("refcocog/val", g.dir.path())->size(), 1);
  const std::string err = test::error_of([&] { make_eval_dataset("refcocog/google/val", g.dir.path()); });
  EXPECT_NE(err.find("refs(google).p: does not exist"), std::string::npos) << err;
  ReferFixture c(0, "refclef", "unc");
  Sample s = make_eval_dataset("refclef/val", c.dir.path())->get(0);
  EXPECT_NE(s.image_path.find("saiapr_tc-12"), std::string::npos);
}

TEST(ReferDatasets, BadRefsAndPickles) {
  ReferFixture f(2);
  const fs::path refs = f.dir.path() / "refer_seg/refcoco/refs(unc).p";
  test::write_text(refs, Py2Pickler(2).dumps(L({ref(0, 99, 1, "train", {"ghost"})})));
  std::string err = test::error_of([&] { ReferApi(f.dir.path() / "refer_seg", "refcoco", "unc"); });
  EXPECT_NE(err.find("refs(unc).p: ref_id 0: ann_id 99 is not in instances.json"), std::string::npos) << err;
  SkipReport report;
  ReferApi skipped(f.dir.path() / "refer_seg", "refcoco", "unc", true, &report);
  EXPECT_EQ(report.count(), 1);
  test::write_text(refs, Py2Pickler(2).dumps(L({D({{"ref_id", I(1)}})})));
  err = test::error_of([&] { ReferApi(f.dir.path() / "refer_seg", "refcoco", "unc"); });
  EXPECT_NE(err.find("refs(unc).p: refs[0]: missing key 'ann_id'"), std::string::npos) << err;
  test::write_text(refs, "\x80\x02]q\x01(cos\nsystem\n");
  err = test::error_of([&] { ReferApi(f.dir.path() / "refer_seg", "refcoco", "unc"); });
  EXPECT_NE(err.find("refusing to load global 'os.system'"), std::string::npos) << err;
}

TEST(ReferDatasets, RefCocomMasksAndFolders) {
  test::TempDir dir("m2sa_refcocom");
  const fs::path rs = dir.path() / "refer_seg";
  test::write_json(rs / "RefCOCOm/annotations/val.json",
                   json::array({{{"img_name", "COCO_train2014_000000000001.jpg"},
                                 {"segment_id", 42},
                                 {"sentences", {{{"sent", " The Cup "}}, {{"sent", "its handle"}}}}}}));
  test::write_solid_image(rs / "images/mscoco/images/train2014/COCO_train2014_000000000001.jpg", 3, 4);
  at::Tensor gray = at::zeros({3, 4}, at::kByte);
  gray[0][0] = 255;
  gray[1][1] = 254;  // not 255: 254/255 truncates to 0 in the reference
  // The reference code opens refer_seg/Refcocom/masks (trap 15); the README folder is tried first.
  write_image(rs / "Refcocom/masks/42.png", gray);
  auto ds = make_eval_dataset("refcocom/val", dir.path());
  Sample s = ds->get(0);
  ASSERT_EQ(s.conversations.size(), 2u);
  EXPECT_EQ(s.conversations[0][0].user, "<image>\n What is the cup in this image? Please output segmentation mask.");
  ASSERT_EQ(s.masks.size(0), 2);
  EXPECT_EQ(s.masks[0].sum().item<int64_t>(), 1);
  EXPECT_EQ(s.masks[1][0][0].item<int>(), 1);
  fs::remove(rs / "Refcocom/masks/42.png");
  const std::string err = test::error_of([&] { ds->get(0); });
  EXPECT_NE(err.find("mask 42.png is in neither"), std::string::npos) << err;
}

}  // namespace
}  // namespace m2sa::data
