#include "m2sa/data/sem_seg_datasets.h"

#include <gtest/gtest.h>

#include "data_test_util.h"
#include "m2sa/data/image_files.h"
#include "m2sa/io/coco_mask.h"
#include "test_util.h"

namespace m2sa::data {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

QuestionLists question_lists() { return compose_question_lists({"sem_seg", "refer_seg", "vqa", "mmr"}, true); }

at::Tensor label_from_rows(const std::vector<std::vector<int>>& rows) {
  at::Tensor m = at::zeros({static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows[0].size())}, at::kByte);
  for (std::size_t y = 0; y < rows.size(); ++y)
    for (std::size_t x = 0; x < rows[y].size(); ++x) m[y][x] = rows[y][x];
  return m;
}

// Every [SEG] of every conversation, with the mask it points to, must name a class whose pixels are that mask.
void check_label_sample(const Sample& s, const at::Tensor& class_ids, const std::vector<std::string>& classes) {
  int64_t n_seg = 0;
  for (const Dialog& d : s.conversations) {
    ASSERT_EQ(d.size(), 1u);
    n_seg += static_cast<int64_t>(count_of(d[0].assistant, "[SEG]"));
    EXPECT_EQ(d[0].user.rfind("<image>\n", 0), 0u);
  }
  ASSERT_EQ(s.masks.size(0), n_seg);
  ASSERT_EQ(static_cast<int64_t>(s.targets.size()), n_seg);
  for (int64_t i = 0; i < n_seg; ++i) {
    const auto it = std::find(classes.begin(), classes.end(), s.targets[static_cast<std::size_t>(i)].category);
    ASSERT_NE(it, classes.end());
    EXPECT_TRUE(at::equal(s.masks[i], class_ids.eq(it - classes.begin()).to(at::kByte))) << s.targets[i].category;
  }
  EXPECT_FALSE(s.ignore.defined());
}

TEST(SemSegDatasets, Ade20kRemapAndMasks) {
  test::TempDir dir("m2sa_ade");
  const fs::path root = dir.path() / "ade20k";
  const std::vector<std::string> classes = {"wall", "building", "sky", "floor"};
  test::write_json(root / "ade20k_classes.json", classes);
  // stored 0 (unlabeled) and 255 -> ignored; 1 -> wall (0), 3 -> sky (2), 4 -> floor (3)
  at::Tensor stored = label_from_rows({{0, 1, 1, 3}, {255, 1, 3, 3}, {4, 4, 0, 0}});
  test::write_solid_image(root / "images/training/a.jpg", 3, 4);
  write_image(root / "annotations/training/a.png", stored);
  test::write_solid_image(root / "images/training/b.jpg", 3, 4);
  write_image(root / "annotations/training/b.png", at::zeros({3, 4}, at::kByte));  // nothing labelled
  auto ds = make_ade20k_dataset(dir.path(), SemSegOptions{}, question_lists());
  ASSERT_EQ(ds->size(), 2);
  at::Tensor ids = label_from_rows({{255, 0, 0, 2}, {255, 0, 2, 2}, {3, 3, 255, 255}});
  for (uint64_t seed = 0; seed < 20; ++seed) {
    Rng rng(seed);
    Sample s = *ds->get(0, rng);
    check_label_sample(s, ids, classes);
    EXPECT_EQ(s.masks.size(0), 3);  // wall, sky, floor
    EXPECT_LE(s.conversations.size(), 3u);
  }
  Rng rng(0);
  EXPECT_FALSE(ds->get(1, rng).has_value()) << "an all-ignored label map draws again";
}

TEST(SemSegDatasets, Ade20kSamplesAtMostNineClassesOverThreeQuestions) {
  test::TempDir dir("m2sa_ade9");
  const fs::path root = dir.path() / "ade20k";
  std::vector<std::string> classes;
  for (int i = 0; i < 20; ++i) classes.push_back("class" + std::to_string(i));
  test::write_json(root / "ade20k_classes.json", classes);
  at::Tensor stored = at::arange(1, 13, at::kLong).to(at::kByte).view({3, 4});  // 12 classes present
  test::write_solid_image(root / "images/training/a.jpg", 3, 4);
  write_image(root / "annotations/training/a.png", stored);
  auto ds = make_ade20k_dataset(dir.path(), SemSegOptions{}, question_lists());
  for (uint64_t seed = 0; seed < 20; ++seed) {
    Rng rng(seed);
    Sample s = *ds->get(0, rng);
    EXPECT_EQ(s.masks.size(0), 9);
    EXPECT_EQ(s.conversations.size(), 3u);
    check_label_sample(s, stored.to(at::kLong).sub(1), classes);
  }
}

TEST(SemSegDatasets, CocoStuffIgnoresDashClassesAndChecksSizes) {
  test::TempDir dir("m2sa_cocostuff");
  test::write_text(dir.path() / "cocostuff/cocostuff_classes.txt", "0: unlabeled\n1: person\n2: wall-other\n3: sky\n");
  const std::vector<std::string> classes = {"person", "wall-other", "sky"};
  at::Tensor stored = label_from_rows({{0, 1, 2}, {1, 1, 255}});
  write_image(dir.path() / "cocostuff/train2017/x.png", stored);
  test::write_solid_image(dir.path() / "coco/train2017/x.jpg", 2, 3);
  auto ds = make_cocostuff_dataset(dir.path(), SemSegOptions{}, question_lists());
  for (uint64_t seed = 0; seed < 10; ++seed) {
    Rng rng(seed);
    Sample s = *ds->get(0, rng);
    EXPECT_EQ(s.masks.size(0), 2);  // person and sky; wall-other became 255
    check_label_sample(s, label_from_rows({{0, 255, 2}, {255, 255, 255}}), classes);
  }
  // The label and the image must have the same size.
  test::write_solid_image(dir.path() / "coco/train2017/x.jpg", 3, 3);
  auto ds2 = make_cocostuff_dataset(dir.path(), SemSegOptions{}, question_lists());
  Rng rng(0);
  const std::string err = test::error_of([&] { ds2->get(0, rng); });
  EXPECT_NE(err.find("label map is 2x3 (h x w) but image"), std::string::npos) << err;
  // A value beyond the class list.
  write_image(dir.path() / "cocostuff/train2017/x.png", label_from_rows({{7, 7, 7}, {7, 7, 7}, {7, 7, 7}}));
  EXPECT_NE(test::error_of([&] { ds2->get(0, rng); }).find("label value 7 (after the remap) has no class"), std::string::npos);
  // A missing class list says where to get it.
  fs::remove(dir.path() / "cocostuff/cocostuff_classes.txt");
  EXPECT_NE(test::error_of([&] { make_cocostuff_dataset(dir.path(), SemSegOptions{}, question_lists()); })
                .find("copy configs/datasets/cocostuff_classes.txt"),
            std::string::npos);
}

TEST(SemSegDatasets, ShippedClassListsMatchTheReference) {
  const auto ade = read_ade20k_classes(test::repo_root() / "configs/datasets/ade20k_classes.json");
  ASSERT_EQ(ade.size(), 150u);
  EXPECT_EQ(ade[0], "wall");
  EXPECT_EQ(ade[149], "flag");
  const auto cs = read_cocostuff_classes(test::repo_root() / "configs/datasets/cocostuff_classes.txt");
  ASSERT_EQ(cs.size(), 182u);
  EXPECT_EQ(cs[0], "person");
  EXPECT_EQ(cs[181], "wood");
}

TEST(SemSegDatasets, MapillaryPaletteLabels) {
  test::TempDir dir("m2sa_mapillary");
  const fs::path root = dir.path() / "mapillary";
  test::write_json(root / "config_v2.0.json",
                   {{"labels", {{{"readable", "Bird"}, {"name", "animal--bird"}, {"color", {165, 42, 42}}},
                                {{"readable", "Road"}, {"name", "construction--flat--road"}, {"color", {128, 64, 128}}},
                                {{"readable", "Unlabeled"}, {"name", "void--unlabeled"}, {"color", {0, 0, 0}}}}}});
  // Palette padded with black after the last class, as Mapillary's is: black must map back to index 2.
  std::vector<std::array<uint8_t, 3>> palette = {{165, 42, 42}, {128, 64, 128}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}};
  at::Tensor idx = label_from_rows({{0, 1, 1}, {2, 2, 1}});
  test::write_palette_png(root / "training/v2.0/labels/m.png", idx, palette);
  test::write_solid_image(root / "training/images/m.jpg", 2, 3);
  EXPECT_TRUE(at::equal(read_label_png(root / "training/v2.0/labels/m.png", "t"), idx));
  auto ds = make_mapillary_dataset(dir.path(), SemSegOptions{}, question_lists());
  Rng rng(1);
  Sample s = *ds->get(0, rng);
  EXPECT_EQ(s.masks.size(0), 3);
  check_label_sample(s, idx, {"bird", "road", "unlabeled"});
}

json coco_file(const std::vector<std::pair<int, std::string>>& cats, const json& anns, int64_t h, int64_t w,
               const std::string& file_name) {
  json c = json::array();
  for (const auto& [id, name] : cats) c.push_back({{"id", id}, {"name", name}});
  return {{"images", {{{"id", 7}, {"file_name", file_name}, {"height", h}, {"width", w}}}},
          {"annotations", anns},
          {"categories", c},
          {"info", {{"year", 2022}}}};
}

TEST(SemSegDatasets, PacoLvisPolygonsAndRles) {
  test::TempDir dir("m2sa_paco");
  const int64_t h = 6, w = 7;
  at::Tensor m2 = at::zeros({h, w}, at::kByte);
  m2.slice(0, 3, 5).slice(1, 4, 6).fill_(1);
  at::Tensor m3 = at::zeros({h, w}, at::kByte);
  m3[5][0] = 1;
  json anns = json::array(
      {{{"id", 1}, {"image_id", 7}, {"category_id", 1}, {"segmentation", json::parse("[[1,1,3,1,3,3,1,3]]")}},
       {{"id", 2}, {"image_id", 7}, {"category_id", 2}, {"segmentation", coco::rle_to_json(coco::encode(m2))}},
       {{"id", 3}, {"image_id", 7}, {"category_id", 3},
        {"segmentation", {{"size", {h, w}}, {"counts", coco::encode(m3).counts}}}}});
  test::write_json(dir.path() / "vlpart/paco/annotations/paco_lvis_v1_train.json",
                   coco_file({{1, "bottle_(drink)"}, {2, "bottle_(drink):cap_(cover)"}, {3, "mug:handle"}}, anns, h, w,
                             "train2017/000000000007.jpg"));
  test::write_solid_image(dir.path() / "coco/train2017/000000000007.jpg", h, w);
  auto ds = make_paco_lvis_dataset(dir.path(), SemSegOptions{}, question_lists());
  ASSERT_EQ(ds->size(), 1);
  at::Tensor m1 = at::zeros({h, w}, at::kByte);
  m1.slice(0, 1, 3).slice(1, 1, 3).fill_(1);
  std::set<std::string> phrases;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    Rng rng(seed);
    Sample s = *ds->get(0, rng);
    ASSERT_EQ(s.masks.size(0), 3);
    EXPECT_EQ(s.conversations.size(), 3u);  // 3 annotations -> 3 questions of one target
    for (int64_t i = 0; i < 3; ++i) {
      const Target& t = s.targets[static_cast<std::size_t>(i)];
      phrases.insert(t.phrase);
      const at::Tensor& expect = t.category == "bottle" ? m1 : t.category == "bottle:cap" ? m2 : m3;
      EXPECT_TRUE(at::equal(s.masks[i], expect)) << t.category;
      EXPECT_EQ(t.is_part, t.category != "bottle");
      // The question names the target, lowercased.
      EXPECT_NE(s.conversations[static_cast<std::size_t>(i)][0].user.find(t.phrase), std::string::npos);
    }
  }
  EXPECT_EQ(phrases, (std::set<std::string>{"bottle", "bottle cap", "the cap of the bottle", "mug handle",
                                            "the handle of the mug"}));
}

TEST(SemSegDatasets, PascalPartAndBadAnnotations) {
  test::TempDir dir("m2sa_pascal");
  const fs::path root = dir.path() / "vlpart/pascal_part";
  json anns = json::array({{{"id", 1}, {"image_id", 7}, {"category_id", 1}, {"segmentation", json::parse("[[0,0,2,0,2,2]]")}},
                           {{"id", 2}, {"image_id", 7}, {"category_id", 1}, {"segmentation", json::parse("[[1,2,3,4]]")}}});
  test::write_json(root / "train.json", coco_file({{1, "dog:head"}}, anns, 4, 4, "2008_000001.jpg"));
  test::write_solid_image(root / "VOCdevkit/VOC2010/JPEGImages/2008_000001.jpg", 4, 4);
  auto ds = make_pascal_part_dataset(dir.path(), SemSegOptions{}, question_lists());
  Rng rng(0);
  const std::string err = test::error_of([&] { ds->get(0, rng); });
  EXPECT_NE(err.find("train.json: annotation id 2 (image 2008_000001.jpg): polygon 0 has only 4 numbers"), std::string::npos)
      << err;
  EXPECT_THROW(ds->get(0, rng), BadEntry);
  // Categories must be "obj:part".
  test::write_json(root / "train.json", coco_file({{1, "dog"}}, anns, 4, 4, "2008_000001.jpg"));
  EXPECT_NE(test::error_of([&] { make_pascal_part_dataset(dir.path(), SemSegOptions{}, question_lists()); }).find("is not \"obj:part\""),
            std::string::npos);
  // An annotation of an unknown image: an error, or skipped and counted.
  anns.push_back({{"id", 3}, {"image_id", 99}, {"category_id", 1}, {"segmentation", json::parse("[[0,0,2,0,2,2]]")}});
  test::write_json(root / "train.json", coco_file({{1, "dog:head"}}, anns, 4, 4, "2008_000001.jpg"));
  EXPECT_NE(test::error_of([&] { make_pascal_part_dataset(dir.path(), SemSegOptions{}, question_lists()); })
                .find("annotation id 3 refers to image id 99"),
            std::string::npos);
  SemSegOptions skip;
  skip.skip_bad = true;
  SkipReport report;
  auto ok = make_pascal_part_dataset(dir.path(), skip, question_lists(), &report);
  EXPECT_EQ(report.count("pascal_part"), 1);
  // The image size in the JSON must match the file.
  test::write_solid_image(root / "VOCdevkit/VOC2010/JPEGImages/2008_000001.jpg", 5, 4);
  EXPECT_NE(test::error_of([&] { ok->get(0, rng); }).find("the annotation file says 4x4 (h x w) but the image is 5x4"),
            std::string::npos);
}

TEST(SemSegDatasets, CocoIntegersOutOfRangeAreBadEntries) {
  // An annotation id of 2^64-1 used to wrap to -1.
  test::TempDir dir("m2sa_pascal_range");
  const fs::path root = dir.path() / "vlpart/pascal_part";
  json anns = json::array({{{"id", 18446744073709551615ull}, {"image_id", 7}, {"category_id", 1},
                            {"segmentation", json::parse("[[0,0,2,0,2,2]]")}}});
  test::write_json(root / "train.json", coco_file({{1, "dog:head"}}, anns, 4, 4, "2008_000001.jpg"));
  test::write_solid_image(root / "VOCdevkit/VOC2010/JPEGImages/2008_000001.jpg", 4, 4);
  const std::string err =
      test::error_of([&] { make_pascal_part_dataset(dir.path(), SemSegOptions{}, question_lists()); });
  EXPECT_NE(err.find("train.json"), std::string::npos) << err;
  EXPECT_NE(err.find("field \"id\": 18446744073709551615 is out of range"), std::string::npos) << err;
}

}  // namespace
}  // namespace m2sa::data
