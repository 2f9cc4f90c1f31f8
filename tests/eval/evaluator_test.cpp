// The evaluator on a tiny random model and a small synthetic split: teacher-forced results equal scoring the
// model's own forward masks image by image with SegMeter; batching and sharding over ranks change nothing (bitwise);
// bad items are errors or skipped; generate mode scores real generations per question.
#include "m2sa/eval/evaluator.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <algorithm>
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
#include "m2sa/core/json_reader.h"
#include "m2sa/data/collate.h"
#include "m2sa/data/eval_datasets.h"
#include "m2sa/data/synth.h"
#include "m2sa/eval/iou.h"
#include "m2sa/text/conversation.h"
#include "m2sa/text/prompt_encoding.h"
#include "models/m2sa/m2sa_test_util.h"

namespace m2sa::eval {
namespace {

using test::error_of;

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

class ThreadComm final : public dist::Communicator {
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


// ---- generate mode ----

m2sa_model::M2SAForCausalLM seg_model() { return test::always_seg_model(7); }

struct HandGeneration {
  SegMeter meter{EvalMode::kGenerate};
  GenerationStats stats;
};

// Generation by hand: one question at a time, chat.py's prompt, masks > 0, matched per question.
HandGeneration generate_by_hand(const m2sa_model::M2SAForCausalLM& model, const data::EvalDataset& ds,
                                int64_t max_new_tokens) {
  World& w = world();
  HandGeneration out;
  const data::CollateConfig cc = data::CollateConfig::for_model(model->config(), false);
  for (int64_t i = 0; i < ds.size(); ++i) {
    const Sample s = ds.get(i);
    const data::M2SATrainBatch b = data::collate_samples({s}, w.tokenizer, cc);
    ImageScore joined;
    joined.mode = EvalMode::kGenerate;
    int64_t gt_offset = 0, pred_offset = 0;
    for (const Dialog& d : s.conversations) {
      const std::string prefix = "<image>\n";
      EXPECT_EQ(d.at(0).user.rfind(prefix, 0), 0u) << d.at(0).user;
      m2sa_model::GenerationRequest req;
      req.images = b.inputs.images;
      req.prompts.push_back({tokenizer_image_token(w.tokenizer, render_generation_prompt(d[0].user.substr(prefix.size()))), 0});
      m2sa_model::GenerationOptions go;
      go.max_new_tokens = max_new_tokens;
      const m2sa_model::GenerationResult r = model->generate(req, go).results.at(0);
      int64_t n_gt = 0;
      for (std::size_t p = d[0].assistant.find("[SEG]"); p != std::string::npos; p = d[0].assistant.find("[SEG]", p + 1))
        ++n_gt;
      const ImageScore q = score_generate(r.masks > 0, s.masks.narrow(0, gt_offset, n_gt), s.ignore);
      for (MaskScore m : q.masks) {
        if (m.pred_index >= 0) m.pred_index += pred_offset;
        joined.masks.push_back(m);
      }
      for (int64_t x : q.extra_predictions) joined.extra_predictions.push_back(x + pred_offset);
      joined.num_gt += n_gt;
      joined.num_pred += q.num_pred;
      gt_offset += n_gt;
      pred_offset += q.num_pred;
      out.stats.questions += 1;
      out.stats.gt_masks += n_gt;
      out.stats.predicted_masks += q.num_pred;
      out.stats.seg_exact += q.num_pred == n_gt;
      out.stats.seg_too_few += q.num_pred < n_gt;
      out.stats.seg_too_many += q.num_pred > n_gt;
      out.stats.no_seg += q.num_pred == 0 && n_gt > 0;
      out.stats.generated_tokens += static_cast<int64_t>(r.output_ids.size());
    }
    out.meter.add_score(joined, s.targets);
  }
  return out;
}

TEST(Evaluator, GenerationPromptIsChatPyOnTheValidationQuestion) {
  World& w = world();
  const m2sa_model::M2SAConfig& c = w.model->config();
  const std::string q = " Which part of the mug can you hold? Please output segmentation mask.";
  const std::vector<int64_t> ids = generation_prompt_ids(w.tokenizer, "<image>\n" + q, c);
  EXPECT_EQ(ids, tokenizer_image_token(w.tokenizer, render_generation_prompt(q)));
  EXPECT_EQ(std::count(ids.begin(), ids.end(), kImageTokenIndex), 1);
  const auto image = std::find(ids.begin(), ids.end(), kImageTokenIndex);
  const std::string tail = w.tokenizer.decode({image + 1, ids.end()});
  const std::string expected_end = "Please output segmentation mask. ASSISTANT:";
  ASSERT_GE(tail.size(), expected_end.size()) << tail;
  EXPECT_EQ(tail.substr(tail.size() - expected_end.size()), expected_end) << tail;
  // A question without the image prefix gets it.
  EXPECT_EQ(generation_prompt_ids(w.tokenizer, q, c), ids);
}

TEST(Evaluator, GenerateMatchesPerQuestionAndCountsSegErrors) {
  World& w = world();
  const m2sa_model::M2SAForCausalLM model = seg_model();
  const int64_t max_new = 3;
  const HandGeneration hand = generate_by_hand(model, *w.val, max_new);
  // Every answer is max_new [SEG]s: at least one question has fewer GT masks (too many predictions).
  EXPECT_EQ(hand.stats.predicted_masks, max_new * hand.stats.questions);
  EXPECT_GT(hand.stats.seg_too_many, 0);
  EXPECT_GT(hand.meter.sums()[MetricSums::kMatched], 0);
  EXPECT_GT(hand.meter.sums()[MetricSums::kExtra], 0);

  for (int64_t per_batch : {1, 3}) {
    GenerationStats stats;
    EvaluateOptions o = quiet(per_batch, EvalMode::kGenerate);
    o.max_new_tokens = max_new;
    o.generation_stats = &stats;
    int64_t answers = 0;
    o.on_answer = [&](const Sample&, int64_t, const m2sa_model::GenerationResult& r) {
      ++answers;
      EXPECT_EQ(static_cast<int64_t>(r.seg_indices.size()), max_new);
      EXPECT_EQ(r.finish_reason, m2sa_model::FinishReason::kMaxNewTokens);
    };
    const SegMeter m = evaluate(model, w.tokenizer, *w.val, o);
    expect_same(m, hand.meter, "generate, " + std::to_string(per_batch) + " image(s) per request vs by hand");
    EXPECT_EQ(answers, hand.stats.questions);
    EXPECT_EQ(stats.to_json()["seg_count"], hand.stats.to_json()["seg_count"]);
    EXPECT_EQ(stats.questions, hand.stats.questions);
    EXPECT_EQ(stats.gt_masks, hand.stats.gt_masks);
    EXPECT_EQ(stats.predicted_masks, hand.stats.predicted_masks);
    EXPECT_EQ(stats.generated_tokens, hand.stats.generated_tokens);
    EXPECT_EQ(stats.finished_max_new_tokens, stats.questions);
    EXPECT_EQ(stats.gt_masks, static_cast<int64_t>(m.sums()[MetricSums::kMasks]));
  }

  // Over ranks: the same meter and the same statistics.
  GenerationStats single;
  EvaluateOptions o = quiet(2, EvalMode::kGenerate);
  o.max_new_tokens = max_new;
  ThreadGroup group(2);
  std::vector<GenerationStats> stats(2);
  std::vector<std::optional<SegMeter>> meters(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r)
    threads.emplace_back([&, r] {
      ThreadComm comm(group, r);
      EvaluateOptions ro = o;
      ro.generation_stats = &stats[static_cast<std::size_t>(r)];
      meters[static_cast<std::size_t>(r)] = evaluate(model, w.tokenizer, *w.val, ro, &comm);
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < 2; ++r) {
    ASSERT_TRUE(meters[static_cast<std::size_t>(r)]);
    expect_same(*meters[static_cast<std::size_t>(r)], hand.meter, "generate on rank " + std::to_string(r));
    EXPECT_EQ(stats[static_cast<std::size_t>(r)].to_json()["seg_count"], hand.stats.to_json()["seg_count"]);
    EXPECT_EQ(stats[static_cast<std::size_t>(r)].questions, hand.stats.questions);
  }
}

TEST(Evaluator, GenerateWithoutSegScoresEveryGtMaskAsZero) {
  // The random model almost never writes [SEG] in 2 tokens: every GT mask is then missing, IoU 0, and its area
  // goes to the cIoU union.
  World& w = world();
  GenerationStats stats;
  EvaluateOptions o = quiet(4, EvalMode::kGenerate);
  o.max_new_tokens = 2;
  o.generation_stats = &stats;
  const SegMeter m = evaluate(w.model, w.tokenizer, *w.val, o);
  ASSERT_EQ(stats.predicted_masks, 0) << "the random model wrote a [SEG]; pick another seed";
  double gt_area = 0;
  int64_t masks = 0;
  for (int64_t i = 0; i < w.val->size(); ++i) {
    const Sample s = w.val->get(i);
    gt_area += s.masks.sum().item<double>();
    masks += s.masks.size(0);
  }
  const MetricSums& sums = m.sums();
  EXPECT_EQ(sums[MetricSums::kMasks], masks);
  EXPECT_EQ(sums[MetricSums::kMissing], masks);
  EXPECT_EQ(sums[MetricSums::kIouSum], 0.0);
  EXPECT_EQ(sums[MetricSums::kIntersection], 0.0);
  EXPECT_EQ(sums[MetricSums::kUnion], gt_area);
  EXPECT_EQ(sums[MetricSums::kImagesSkipped], 0.0);  // generate mode never skips
  EXPECT_EQ(sums[MetricSums::kCountTooFew], static_cast<double>(w.val->size()));
  EXPECT_EQ(stats.no_seg, stats.questions);
  EXPECT_EQ(stats.seg_too_few, stats.questions);
  EXPECT_EQ(m.giou(), 0.0);
  EXPECT_EQ(m.ciou(), 0.0);
}

// An MMR entry whose {seg} count differs from its mask count (issue 16) is evaluated, with a warning, as the
// reference's validate() scores it: zip(gt, pred) with the GT count as the denominator (a GT mask without a
// prediction scores 0), which is exactly SegMeter on the forward's masks by hand. Generate mode scores each question
// against its own masks.
TEST(Evaluator, SegCountMismatchIsScoredAsTheReference) {
  World& w = world();
  test::TempDir dir("m2sa_eval_mismatch");
  std::filesystem::copy(w.dir.path(), dir.path(), std::filesystem::copy_options::recursive);
  const std::filesystem::path file = dir.path() / "MMR" / "MMR_val.json";
  json entries = read_json_file(file);
  bool edited = false;
  for (auto& e : entries) {
    for (auto& t : e.at("text_answers")) {
      std::string text = t.get<std::string>();
      const std::size_t last = text.rfind("{seg}");
      if (edited || last == std::string::npos || text.find("{seg}") == last) continue;
      t = text.substr(0, last) + "it" + text.substr(last + 5);  // one [SEG] fewer than masks
      edited = true;
    }
  }
  ASSERT_TRUE(edited) << "no question with two targets in the synthetic val split";
  write_json_file(file, entries);
  const auto ds = data::make_eval_dataset("val", dir.path());
  ASSERT_EQ(ds->size(), w.val->size());
  const SegMeter hand = score_by_hand(*ds);
  int mismatched = 0;
  EvaluateOptions o = quiet(2);
  o.on_image = [&](const Sample& s, const ImageScore& score) {
    EXPECT_EQ(score.num_gt, s.masks.size(0));
    if (s.masks_per_conversation.empty()) return;
    ++mismatched;
    EXPECT_EQ(score.num_pred, s.masks.size(0) - 1);
    EXPECT_EQ(score.count(), SegCount::kTooFew);
    ASSERT_EQ(static_cast<int64_t>(score.masks.size()), s.masks.size(0));  // every GT mask is in the denominator
    EXPECT_EQ(score.masks.back().pred_index, -1);
    EXPECT_EQ(score.masks.back().iou, 0.0);
  };
  const SegMeter a = evaluate(w.model, w.tokenizer, *ds, o);
  EXPECT_EQ(mismatched, 1);
  expect_same(a, hand, "mismatched entry: evaluate vs by hand");
  EXPECT_EQ(a.sums()[MetricSums::kCountTooFew], 1.0);

  EvaluateOptions g = quiet(2, EvalMode::kGenerate);
  g.max_new_tokens = 2;
  const SegMeter gm = evaluate(w.model, w.tokenizer, *ds, g);
  EXPECT_EQ(gm.sums()[MetricSums::kMasks], a.sums()[MetricSums::kMasks]);
}

}  // namespace
}  // namespace m2sa::eval
