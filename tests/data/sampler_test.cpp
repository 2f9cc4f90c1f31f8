#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

#include "data_test_util.h"
#include "m2sa/data/data_config.h"
#include "m2sa/data/mixed_sampler.h"
#include "m2sa/data/training_mix.h"
#include "test_util.h"

namespace m2sa::data {
namespace {

using nlohmann::json;

std::vector<SamplerFamily> m2sa_families() {
  return {{"sem_seg", 2, {"ade20k", "cocostuff", "pascal_part", "paco_lvis", "mapillary"}, {100, 50, 20, 30, 10}},
          {"refer_seg", 9, {"refclef", "refcoco", "refcoco+", "refcocog"}, {40, 40, 40, 40}},
          {"vqa", 2, {"llava_instruct_150k"}, {1000}},
          {"mmr", 6, {"MMR_train"}, {500}}};
}

TEST(MixedSampler, FamilyFrequenciesFollowTheRates) {
  MixedSampler s(m2sa_families(), 1234, 0);
  const auto p = s.probabilities();
  EXPECT_NEAR(p[0], 2.0 / 19, 1e-12);
  EXPECT_NEAR(p[1], 9.0 / 19, 1e-12);
  const int64_t n = 100000;
  std::vector<int64_t> fam(4, 0), sub(5, 0);
  for (int64_t k = 0; k < n; ++k) {
    const Draw d = s.next();
    ++fam[static_cast<std::size_t>(d.family)];
    if (d.family == 0) ++sub[static_cast<std::size_t>(d.dataset)];
    ASSERT_LT(d.item, s.families()[static_cast<std::size_t>(d.family)].sizes[static_cast<std::size_t>(d.dataset)]);
  }
  // Pearson chi-square with 3 degrees of freedom: 16.27 is the 0.1% critical value.
  double chi2 = 0;
  for (int i = 0; i < 4; ++i) {
    const double e = p[static_cast<std::size_t>(i)] * n;
    chi2 += (fam[static_cast<std::size_t>(i)] - e) * (fam[static_cast<std::size_t>(i)] - e) / e;
  }
  EXPECT_LT(chi2, 16.27) << "family counts " << fam[0] << " " << fam[1] << " " << fam[2] << " " << fam[3];
  // Sub-datasets are uniform inside a family (not proportional to their sizes): 4 dof, 18.47 at 0.1%.
  double chi2_sub = 0;
  const double e = static_cast<double>(fam[0]) / 5;
  for (int64_t c : sub) chi2_sub += (c - e) * (c - e) / e;
  EXPECT_LT(chi2_sub, 18.47);
}

TEST(MixedSampler, DeterministicPerRankAndResumable) {
  MixedSampler a(m2sa_families(), 7, 0), b(m2sa_families(), 7, 0), r1(m2sa_families(), 7, 1);
  int same_as_rank1 = 0;
  for (int k = 0; k < 1000; ++k) {
    const Draw x = a.next(), y = b.next(), z = r1.next();
    EXPECT_EQ(x.family, y.family);
    EXPECT_EQ(x.item, y.item);
    EXPECT_EQ(x.seed, y.seed);
    same_as_rank1 += x.seed == z.seed;
  }
  EXPECT_EQ(same_as_rank1, 0) << "ranks draw different streams";
  // Resume: a fresh sampler restored from the state continues exactly.
  const json state = a.state();
  MixedSampler c(m2sa_families(), 7, 0);
  c.restore(json::parse(state.dump()));
  EXPECT_EQ(c.position(), 1000);
  for (int k = 0; k < 100; ++k) {
    const Draw x = a.next(), y = c.next();
    EXPECT_EQ(x.step, y.step);
    EXPECT_EQ(x.dataset, y.dataset);
    EXPECT_EQ(x.item, y.item);
    EXPECT_EQ(x.seed, y.seed);
  }
  // Redraws keep the family.
  for (int k = 0; k < 200; ++k)
    for (int attempt = 1; attempt < 4; ++attempt) EXPECT_EQ(a.draw(k, attempt).family, a.draw(k, 0).family);
  // A mismatching state is refused with the reason.
  MixedSampler other_seed(m2sa_families(), 8, 0);
  EXPECT_NE(test::error_of([&] { other_seed.restore(state); }).find("saved with seed 7 but this run uses seed 8"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { r1.restore(state); }).find("saved by rank 0 but is restored on rank 1"), std::string::npos);
  auto fams = m2sa_families();
  fams[3].sizes[0] = 501;
  MixedSampler changed(fams, 7, 0);
  EXPECT_NE(test::error_of([&] { changed.restore(state); }).find("the dataset mix changed"), std::string::npos);
}

// A dataset whose items say who they are; some items are empty or bad on purpose.
class FakeDataset : public TrainDataset {
 public:
  FakeDataset(std::string name, int64_t n, std::set<int64_t> empty = {}, std::set<int64_t> bad = {})
      : name_(std::move(name)), n_(n), empty_(std::move(empty)), bad_(std::move(bad)) {}
  const std::string& name() const override { return name_; }
  int64_t size() const override { return n_; }
  std::optional<Sample> get(int64_t index, Rng& rng) const override {
    if (empty_.count(index)) return std::nullopt;
    if (bad_.count(index)) bad_entry(name_, ".json: entry ", index, ": broken on purpose");
    Sample s;
    s.dataset = name_;
    s.source = name_ + ":" + std::to_string(index);
    s.conversations.push_back({Turn{"<image>\nq", "[SEG]." + std::to_string(rng() % 1000)}});
    s.masks = at::zeros({1, 2, 2}, at::kByte);
    return s;
  }

 private:
  std::string name_;
  int64_t n_;
  std::set<int64_t> empty_, bad_;
};

std::vector<DatasetFamily> fake_mix(std::set<int64_t> bad = {}) {
  std::vector<DatasetFamily> f;
  f.push_back({"sem_seg", 2, {}});
  f.back().datasets.push_back(std::make_unique<FakeDataset>("ade20k", 10, std::set<int64_t>{0, 1, 2}));
  f.back().datasets.push_back(std::make_unique<FakeDataset>("paco_lvis", 10));
  f.push_back({"mmr", 6, {}});
  f.back().datasets.push_back(std::make_unique<FakeDataset>("MMR_train", 10, std::set<int64_t>{}, bad));
  return f;
}

TEST(TrainingMix, DeterministicRedrawsAndSkipBad) {
  TrainingMix a(fake_mix(), 3), b(fake_mix(), 3);
  for (int64_t k = 0; k < 300; ++k) {
    const Sample x = a.next(), y = b.sample(k);
    EXPECT_EQ(x.source, y.source);
    EXPECT_EQ(x.conversations[0][0].assistant, y.conversations[0][0].assistant);
  }
  EXPECT_GT(a.empty_draws(), 0);  // empty ade20k items were redrawn
  // The state continues the stream in a new mix.
  TrainingMix c(fake_mix(), 3);
  c.restore(a.state());
  EXPECT_EQ(c.next().source, a.next().source);

  // A bad entry stops with the entry's message...
  TrainingMix strict(fake_mix({4}), 3);
  std::string err;
  for (int64_t k = 0; k < 300 && err.empty(); ++k) err = test::error_of([&] { strict.sample(k); });
  EXPECT_NE(err.find("MMR_train.json: entry 4: broken on purpose"), std::string::npos) << err;
  EXPECT_NE(err.find("--skip-bad"), std::string::npos);
  // ... or, with skip_bad, is counted and redrawn inside the same family.
  TrainingMix lenient(fake_mix({4}), 3, 0, /*skip_bad=*/true);
  for (int64_t k = 0; k < 300; ++k) {
    const Sample s = lenient.sample(k);
    EXPECT_NE(s.source, "MMR_train:4");
  }
  EXPECT_GT(lenient.skipped().count("MMR_train"), 0);
  // Every item bad: the step fails after max_redraws.
  std::set<int64_t> all;
  for (int64_t i = 0; i < 10; ++i) all.insert(i);
  std::vector<DatasetFamily> only_bad;
  only_bad.push_back({"mmr", 1, {}});
  only_bad.back().datasets.push_back(std::make_unique<FakeDataset>("MMR_train", 10, std::set<int64_t>{}, all));
  TrainingMix hopeless(std::move(only_bad), 3, 0, true, 5);
  EXPECT_NE(test::error_of([&] { hopeless.sample(0); }).find("5 draws in a row gave no usable sample"), std::string::npos);
}

TEST(DataConfig, StrictParsingAndDefaults) {
  DataConfig d = DataConfig::from_json(JsonReader(json::object(), "inline.json"));
  EXPECT_EQ(d.sample_rates, (std::vector<double>{2, 9, 2, 6}));
  EXPECT_EQ(d.datasets, (std::vector<std::string>{"sem_seg", "refer_seg", "vqa", "mmr"}));
  EXPECT_EQ(d.num_classes_per_sample, 3);
  EXPECT_EQ(d.num_classes_per_question, 3);
  EXPECT_TRUE(d.use_expand_question_list);
  EXPECT_FALSE(d.skip_bad);
  // Round trip.
  const json j = d.to_json();
  EXPECT_EQ(DataConfig::from_json(JsonReader(j, "x.json")).to_json(), j);
  // The reference's family name.
  DataConfig r = DataConfig::from_json(
      JsonReader(json{{"datasets", {"vqa", "multi_part_reason_seg"}}, {"sample_rates", {1, 3}}}, "x.json"));
  EXPECT_EQ(r.datasets[1], "mmr");
  auto err = [](const json& j) { return test::error_of([&] { DataConfig::from_json(JsonReader(j, "cfg.json")); }); };
  EXPECT_NE(err({{"sample_rate", {1}}}).find("cfg.json: top level: unknown field(s): sample_rate"), std::string::npos);
  EXPECT_NE(err({{"datasets", {"sem_seg"}}}).find("sample_rates has 4 values but datasets has 1"), std::string::npos);
  EXPECT_NE(err({{"datasets", {"semseg"}}, {"sample_rates", {1}}}).find("unknown name \"semseg\""), std::string::npos);
  EXPECT_NE(err({{"sem_seg_data", {"ade20k", "partimagenet"}}}).find("sem_seg_data: unknown name \"partimagenet\""),
            std::string::npos);
  EXPECT_NE(err({{"sample_rates", {0, 0, 0, 0}}}).find("all rates are zero"), std::string::npos);
  EXPECT_NE(err({{"sample_rates", {1, -1, 1, 1}}}).find("-1 is not a non-negative number"), std::string::npos);
  EXPECT_NE(err({{"num_classes_per_question", "3"}}).find("num_classes_per_question: expected an integer"), std::string::npos);
  // Relative class-list paths are resolved against the config file's folder.
  DataConfig c = DataConfig::from_json(JsonReader(json{{"ade20k_classes", "datasets/ade20k_classes.json"}}, "/etc/m2sa/train.json"));
  EXPECT_EQ(c.ade20k_classes, std::filesystem::path("/etc/m2sa/datasets/ade20k_classes.json"));
}

}  // namespace
}  // namespace m2sa::data
