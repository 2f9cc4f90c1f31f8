#include "m2sa/data/synth.h"

#include <gtest/gtest.h>

#include <map>

#include "data_test_util.h"
#include "m2sa/data/data_config.h"
#include "m2sa/data/eval_datasets.h"
#include "m2sa/data/mmr_dataset.h"
#include "m2sa/data/sem_seg_datasets.h"
#include "m2sa/data/training_mix.h"
#include "m2sa/data/vqa_reason_datasets.h"
#include "test_util.h"

namespace m2sa::data {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

SynthOptions small_options(uint64_t seed) {
  SynthOptions o;
  o.seed = seed;
  o.train_images = 8;
  o.val_images = 4;
  o.test_images = 3;
  o.min_size = 96;
  o.max_size = 160;
  return o;
}

std::map<std::string, std::string> all_files(const fs::path& root) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(root))
    if (e.is_regular_file()) out[fs::relative(e.path(), root).string()] = test::read_bytes(e.path());
  return out;
}

// The mask drawn for `category` ("house" or "house:door") that equals `mask`, if any.
bool drawn(const SynthScene& scene, const std::string& category, const at::Tensor& mask) {
  const std::size_t colon = category.find(':');
  for (const SynthObject& o : scene.objects) {
    if (o.category != category.substr(0, colon)) continue;
    if (colon == std::string::npos) {
      if (at::equal(o.mask, mask)) return true;
    } else {
      for (const SynthPart& p : o.parts)
        if (p.name == category.substr(colon + 1) && at::equal(p.mask, mask)) return true;
    }
  }
  return false;
}

TEST(Synth, SameSeedSameBytesAndTheRealLayout) {
  test::TempDir a("m2sa_synth_a"), b("m2sa_synth_b"), c("m2sa_synth_c");
  const SynthSummary sa = write_synthetic_dataset(a.path(), small_options(5));
  write_synthetic_dataset(b.path(), small_options(5));
  write_synthetic_dataset(c.path(), small_options(6));
  const auto fa = all_files(a.path()), fb = all_files(b.path()), fc = all_files(c.path());
  ASSERT_EQ(fa.size(), fb.size());
  for (const auto& [name, bytes] : fa) {
    ASSERT_TRUE(fb.count(name)) << name;
    EXPECT_TRUE(bytes == fb.at(name)) << name << " differs between two runs with the same seed";
  }
  EXPECT_NE(fa.at("MMR/MMR_train.json"), fc.at("MMR/MMR_train.json"));
  for (const char* f : {"MMR/MMR_train.json", "MMR/MMR_val.json", "MMR/MMR_test_obj_only.json", "MMR/MMR_test_part_only.json",
                        "MMR/MMR_test_mixed.json", "vlpart/paco/annotations/paco_lvis_v1_train.json",
                        "llava_dataset/llava_instruct_150k.json", "refer_seg/images/mscoco/images/train2017/000000000001.jpg",
                        "refer_seg/images/mscoco/images/val2017/000001000001.jpg", "coco/train2017/000000000001.jpg",
                        "synth_info.json"})
    EXPECT_TRUE(fa.count(f)) << f;
  EXPECT_EQ(sa.images, 8 + 4 + 3 * 3);
  for (const auto& [name, bytes] : fa) EXPECT_EQ(name.find(".tmp"), std::string::npos) << "leftover " << name;
}

TEST(Synth, ReadersParseItAndMasksAreWhatWasDrawn) {
  test::TempDir dir("m2sa_synth_read");
  const SynthOptions opt = small_options(11);
  write_synthetic_dataset(dir.path(), opt);
  // Evaluation splits: every mask is a drawn object / part mask of the right category; split kinds hold.
  const std::vector<std::pair<std::string, int>> splits = {{"val", 1}, {"test/obj", 2}, {"test/part", 3}, {"test/mixed", 4}};
  for (const auto& [split, id] : splits) {
    auto ds = make_eval_dataset(split, dir.path());
    EXPECT_EQ(ds->size(), id == 1 ? opt.val_images : opt.test_images) << split;
    for (int64_t i = 0; i < ds->size(); ++i) {
      Sample s = ds->get(i);
      const SynthScene scene = render_scene(synth_scene_seed(opt, id, static_cast<int>(i)), opt);
      ASSERT_EQ(s.height, scene.height);
      ASSERT_EQ(s.width, scene.width);
      int64_t n_seg = 0;
      std::size_t t = 0;
      for (const Dialog& d : s.conversations) {
        const int64_t k = static_cast<int64_t>(count_of(d[0].assistant, "[SEG]"));
        int objects = 0, parts = 0;
        for (int64_t j = 0; j < k; ++j, ++t) (s.targets[t].is_part ? parts : objects)++;
        if (id == 2) { EXPECT_EQ(parts, 0) << d[0].user; }
        if (id == 3) { EXPECT_EQ(objects, 0) << d[0].user; }
        if (id == 4) { EXPECT_TRUE(objects > 0 && parts > 0) << d[0].user; }
        n_seg += k;
      }
      ASSERT_EQ(s.masks.size(0), n_seg);
      for (int64_t m = 0; m < n_seg; ++m) {
        EXPECT_TRUE(drawn(scene, s.targets[static_cast<std::size_t>(m)].category, s.masks[m]))
            << split << " item " << i << " mask " << m << " (" << s.targets[static_cast<std::size_t>(m)].category << ")";
        EXPECT_GT(s.masks[m].sum().item<int64_t>(), 0);
      }
      // The JPEG shows the drawn image.
      const at::Tensor img = read_image_rgb(s.image_path).to(at::kFloat);
      EXPECT_LT((img - scene.image.to(at::kFloat)).abs().mean().item<float>(), 8.0f);
    }
  }
  // Training readers.
  const QuestionLists lists = compose_question_lists({"sem_seg", "vqa", "mmr"}, true);
  MmrTrainDataset mmr(dir.path(), MmrOptions{}, lists);
  EXPECT_EQ(mmr.size(), opt.train_images);
  auto paco = make_paco_lvis_dataset(dir.path(), SemSegOptions{}, lists);
  EXPECT_EQ(paco->size(), opt.train_images);
  for (int64_t i = 0; i < paco->size(); ++i) {
    Rng rng(static_cast<uint64_t>(i));
    Sample s = *paco->get(i, rng);
    const SynthScene scene = render_scene(synth_scene_seed(opt, 0, static_cast<int>(i)), opt);
    for (int64_t m = 0; m < s.masks.size(0); ++m)
      EXPECT_TRUE(drawn(scene, s.targets[static_cast<std::size_t>(m)].category, s.masks[m]));
  }
  VqaDataset vqa(dir.path());
  EXPECT_EQ(vqa.size(), opt.train_images);
  // The whole mix from a data config.
  DataConfig cfg = DataConfig::from_json(JsonReader(json{{"dataset_dir", dir.path().string()},
                                                         {"datasets", {"sem_seg", "vqa", "mmr"}},
                                                         {"sample_rates", {2, 2, 6}},
                                                         {"sem_seg_data", {"paco_lvis"}}},
                                                    "synth.json"));
  TrainingMix mix(cfg);
  std::map<std::string, int> seen;
  for (int64_t k = 0; k < 60; ++k) {
    Sample s = mix.next();
    ++seen[s.dataset];
    int64_t n_seg = 0;
    for (const Dialog& d : s.conversations)
      for (const Turn& t : d) n_seg += static_cast<int64_t>(count_of(t.assistant, "[SEG]"));
    EXPECT_EQ(s.masks.size(0), n_seg) << s.source;
  }
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_EQ(mix.skipped().count(), 0);
}

TEST(Synth, QuestionsNameInstancesAndParts) {
  SynthOptions opt = small_options(3);
  opt.max_objects = 3;
  int instance_answers = 0, multi = 0, total = 0;
  for (int i = 0; i < 40; ++i) {
    const SynthScene scene = render_scene(synth_scene_seed(opt, 0, i), opt);
    ASSERT_GE(scene.objects.size(), 1u);
    for (const SynthObject& o : scene.objects) {
      EXPECT_GE(o.visible_area * 2, o.full_area) << "every object keeps at least half of its pixels";
      EXPECT_EQ(o.mask.sum().item<int64_t>(), o.visible_area);
    }
    Rng rng(static_cast<uint64_t>(i));
    for (const SynthQuestion& q : make_questions(scene, {SynthKind::kObject, SynthKind::kPart, SynthKind::kMixed}, 5, rng)) {
      ++total;
      EXPECT_EQ(count_of(q.text_answer, "{seg}"), q.targets.size()) << q.text_answer;
      instance_answers += q.text_answer.find("_1") != std::string::npos;
      multi += q.targets.size() > 1;
    }
  }
  EXPECT_GT(total, 100);
  EXPECT_GT(instance_answers, 0) << "instances of one category are named house_1, house_2, ...";
  EXPECT_GT(multi, total / 4);
}

TEST(Synth, CommandLine) {
  test::TempDir dir("m2sa_synth_cli");
  auto r = test::run_cli({"synth", "--out", dir.path().string(), "--seed", "2", "--images", "2", "--val-images", "1",
                          "--test-images", "1", "--max-size", "128", "--min-size", "96"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("wrote 6 images"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(dir.path() / "MMR/MMR_val.json"));
  r = test::run_cli({"synth", "--out", dir.path().string(), "--min-size", "10"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--min-size must be at least 64"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace m2sa::data
