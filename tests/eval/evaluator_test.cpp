// The evaluator on a tiny random model and a small synthetic split: teacher-forced results equal scoring the
// model's own forward masks image by image with SegMeter; batching and sharding over ranks change nothing (bitwise);
// bad items are errors or skipped; generate mode scores real generations per question.
#include "m2sa/eval/evaluator.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "m2sa/core/error.h"
#include "m2sa/data/collate.h"
#include "m2sa/data/eval_datasets.h"
#include "m2sa/data/synth.h"
#include "m2sa/eval/iou.h"
#include "models/m2sa/m2sa_test_util.h"

namespace m2sa::eval {
namespace {

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// One synthetic dataset and one tiny model for all tests of this file.
struct World {
  test::TempDir dir{"m2sa_evaluator"};
  std::unique_ptr<data::EvalDataset> val;
  m2sa_model::M2SAForCausalLM model{nullptr};
  Tokenizer tokenizer = Tokenizer::load(test::repo_root() / "configs" / "tokenizer" / "tokenizer.model");

  World() {
    data::SynthOptions o;
    o.seed = 3;
    o.train_images = 0;
    o.val_images = 5;
    o.test_images = 1;
    o.min_size = 64;
    o.max_size = 112;
    data::write_synthetic_dataset(dir.path(), o);
    val = data::make_eval_dataset("val", dir.path());
    model = test::tiny_model(7);
  }
};

World& world() {
  static World w;
  return w;
}

// The reference's validate() by hand: one image per forward, `pred_masks > 0`, SegMeter.
SegMeter score_by_hand(const data::EvalDataset& ds, const std::set<int64_t>& skip = {}) {
  World& w = world();
  at::NoGradGuard no_grad;
  SegMeter meter(EvalMode::kTeacherForced);
  const data::CollateConfig cc = data::CollateConfig::for_model(w.model->config(), /*training=*/false);
  for (int64_t i = 0; i < ds.size(); ++i) {
    if (skip.count(i)) continue;
    const Sample s = ds.get(i);
    data::M2SATrainBatch b = data::collate_samples({s}, w.tokenizer, cc);
    b.inputs.labels = at::Tensor();
    const m2sa_model::ForwardOutput out = w.model->forward(b.inputs);
    meter.add(out.pred_masks.at(0) > 0, s.masks, s.ignore, s.targets);
  }
  return meter;
}

void expect_same(const SegMeter& a, const SegMeter& b, const std::string& what) {
  EXPECT_EQ(a.sums().to_vector(), b.sums().to_vector()) << what << "\n"
                                                        << a.sums().to_json().dump() << "\n"
                                                        << b.sums().to_json().dump();
  EXPECT_EQ(a.categories().to_json(), b.categories().to_json()) << what;
}

EvaluateOptions quiet(int64_t per_batch, EvalMode mode = EvalMode::kTeacherForced) {
  EvaluateOptions o;
  o.mode = mode;
  o.images_per_batch = per_batch;
  o.log_progress = false;
  return o;
}

// An in-process "world" of ranks on threads: only all_gather_bytes is needed by the evaluator.
struct ThreadGroup {
  explicit ThreadGroup(int n) : world(n), slots(static_cast<std::size_t>(n)) {}
  int world;
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<std::string> slots;
  int arrived = 0;
  int generation = 0;
  std::vector<std::string> result;
};

class ThreadComm final : public train::Communicator {
 public:
  ThreadComm(ThreadGroup& g, int rank) : g_(g), rank_(rank) {}
  int rank() const override { return rank_; }
  int world_size() const override { return g_.world; }
  int local_rank() const override { return rank_; }
  std::string backend() const override { return "threads"; }
  c10::Device device() const override { return c10::Device(c10::kCPU); }
  void all_reduce_sum_(at::Tensor&) override { fail("ThreadComm: all_reduce_sum_ not implemented"); }
  void all_reduce_max_(at::Tensor&) override { fail("ThreadComm: all_reduce_max_ not implemented"); }
  void broadcast_(at::Tensor&, int) override { fail("ThreadComm: broadcast_ not implemented"); }
  void barrier() override { all_gather_bytes(""); }
  std::vector<std::string> all_gather_bytes(const std::string& bytes) override {
    std::unique_lock<std::mutex> lock(g_.mutex);
    const int gen = g_.generation;
    g_.slots[static_cast<std::size_t>(rank_)] = bytes;
    if (++g_.arrived == g_.world) {
      g_.result = g_.slots;
      g_.arrived = 0;
      ++g_.generation;
      g_.cv.notify_all();
    } else {
      g_.cv.wait(lock, [&] { return g_.generation != gen; });
    }
    return g_.result;
  }

 private:
  ThreadGroup& g_;
  int rank_;
};

// Runs evaluate() on `n` thread-ranks; returns each rank's meter or error.
struct RankResult {
  std::optional<SegMeter> meter;
  std::string error;
};
std::vector<RankResult> evaluate_on_threads(const data::EvalDataset& ds, const EvaluateOptions& opt, int n,
                                            std::vector<data::SkipReport>* skips = nullptr) {
  ThreadGroup group(n);
  std::vector<RankResult> out(static_cast<std::size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      ThreadComm comm(group, r);
      EvaluateOptions o = opt;
      if (skips != nullptr) o.skip_report = &(*skips)[static_cast<std::size_t>(r)];
      try {
        out[static_cast<std::size_t>(r)].meter = evaluate(world().model, world().tokenizer, ds, o, &comm);
      } catch (const std::exception& e) {
        out[static_cast<std::size_t>(r)].error = e.what();
      }
    });
  for (auto& t : threads) t.join();
  return out;
}

// The val split with item `bad` throwing BadEntry (and optionally a rank-specific failure).
class BrokenDataset final : public data::EvalDataset {
 public:
  BrokenDataset(const data::EvalDataset& inner, int64_t bad) : inner_(inner), bad_(bad) {}
  const std::string& name() const override { return inner_.name(); }
  int64_t size() const override { return inner_.size(); }
  Sample get(int64_t index) const override {
    if (index == bad_) data::bad_entry("MMR_val.json: entry ", index, ": broken on purpose");
    return inner_.get(index);
  }

 private:
  const data::EvalDataset& inner_;
  int64_t bad_;
};

TEST(Evaluator, TeacherForcedEqualsScoringTheForwardByHand) {
  World& w = world();
  ASSERT_GE(w.val->size(), 4);
  const SegMeter hand = score_by_hand(*w.val);
  ASSERT_GT(hand.sums()[MetricSums::kMasks], 0);
  // The random model predicts something: the comparison is not between empty results.
  EXPECT_GT(hand.sums()[MetricSums::kPredictions], 0);
  EXPECT_GT(hand.sums()[MetricSums::kUnion], 0);

  int64_t images_seen_by_callback = 0;
  EvaluateOptions one = quiet(1);
  one.on_image = [&](const Sample& s, const ImageScore& score) {
    ++images_seen_by_callback;
    EXPECT_EQ(score.num_gt, s.masks.size(0));
    EXPECT_EQ(score.num_pred, s.masks.size(0));  // teacher forcing: one prediction per GT [SEG]
  };
  const SegMeter a = evaluate(w.model, w.tokenizer, *w.val, one);
  EXPECT_EQ(images_seen_by_callback, w.val->size());
  expect_same(a, hand, "1 image per forward vs by hand");
  EXPECT_EQ(a.sums()[MetricSums::kImagesSeen], static_cast<double>(w.val->size()));
  EXPECT_EQ(a.sums()[MetricSums::kCountExact], static_cast<double>(w.val->size()));

  // Several images per forward (padding between conversations of different lengths) change nothing.
  const SegMeter b = evaluate(w.model, w.tokenizer, *w.val, quiet(3));
  expect_same(b, hand, "3 images per forward vs by hand");
  EXPECT_EQ(b.giou(), hand.giou());
  EXPECT_EQ(b.ciou(), hand.ciou());
}

TEST(Evaluator, LimitAndBadOptions) {
  World& w = world();
  EvaluateOptions o = quiet(2);
  o.limit = 2;
  const SegMeter m = evaluate(w.model, w.tokenizer, *w.val, o);
  EXPECT_EQ(m.sums()[MetricSums::kImagesSeen], 2);
  o.limit = 0;
  EXPECT_EQ(evaluate(w.model, w.tokenizer, *w.val, o).sums()[MetricSums::kImagesSeen], 0);
  o.images_per_batch = 0;
  EXPECT_NE(error_of([&] { evaluate(w.model, w.tokenizer, *w.val, o); }).find("images_per_batch"), std::string::npos);
}

TEST(Evaluator, RanksGiveBitwiseTheSameTotals) {
  World& w = world();
  const SegMeter single = evaluate(w.model, w.tokenizer, *w.val, quiet(2));
  for (int n : {2, 3}) {
    const std::vector<RankResult> ranks = evaluate_on_threads(*w.val, quiet(2), n);
    for (int r = 0; r < n; ++r) {
      ASSERT_TRUE(ranks[static_cast<std::size_t>(r)].meter) << ranks[static_cast<std::size_t>(r)].error;
      expect_same(*ranks[static_cast<std::size_t>(r)].meter, single,
                  "rank " + std::to_string(r) + " of " + std::to_string(n));
    }
  }
}

TEST(Evaluator, BadItemsAreErrorsOrSkipped) {
  World& w = world();
  const BrokenDataset broken(*w.val, 2);
  const std::string err = error_of([&] { evaluate(w.model, w.tokenizer, broken, quiet(2)); });
  EXPECT_NE(err.find("item 2"), std::string::npos) << err;
  EXPECT_NE(err.find("broken on purpose"), std::string::npos) << err;

  EvaluateOptions o = quiet(2);
  o.skip_bad = true;
  data::SkipReport report;
  o.skip_report = &report;
  const SegMeter m = evaluate(w.model, w.tokenizer, broken, o);
  EXPECT_EQ(report.count(), 1);
  EXPECT_NE(report.summary().find("broken on purpose"), std::string::npos) << report.summary();
  expect_same(m, score_by_hand(*w.val, {2}), "skip_bad vs by hand without item 2");

  // Over two ranks: every rank gets the whole skip report, and the same totals.
  std::vector<data::SkipReport> skips(2);
  const std::vector<RankResult> ranks = evaluate_on_threads(broken, o, 2, &skips);
  for (int r = 0; r < 2; ++r) {
    ASSERT_TRUE(ranks[static_cast<std::size_t>(r)].meter) << ranks[static_cast<std::size_t>(r)].error;
    expect_same(*ranks[static_cast<std::size_t>(r)].meter, m, "skip_bad on rank " + std::to_string(r));
    EXPECT_EQ(skips[static_cast<std::size_t>(r)].count(), 1);
  }

  // Without skip_bad, the rank that failed is named on every rank (item 2 belongs to rank 0 of 2, so rank 1
  // learns it at the gather instead of waiting).
  const std::vector<RankResult> failed = evaluate_on_threads(broken, quiet(2), 2);
  for (int r = 0; r < 2; ++r) {
    EXPECT_FALSE(failed[static_cast<std::size_t>(r)].meter);
    EXPECT_NE(failed[static_cast<std::size_t>(r)].error.find("broken on purpose"), std::string::npos)
        << failed[static_cast<std::size_t>(r)].error;
  }
  EXPECT_NE(failed[1].error.find("rank 0 of 2"), std::string::npos) << failed[1].error;
}

}  // namespace
}  // namespace m2sa::eval
