#include "m2sa/eval/seg_meter.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <functional>

#include "eval/text_masks.h"
#include "m2sa/core/error.h"
#include "test_util.h"

namespace m2sa::eval {
namespace {

using test::text_mask;
using test::text_masks;
constexpr double eps = 1e-5;  // the reference's epsilons (per-mask IoU and the meter's average)

// A small split of 4x4 images covering every rule of the protocol (gt, pred).
struct Image {
  at::Tensor gt, pred;
};
std::vector<Image> hand_split() {
  std::vector<Image> s;
  // A: gt0 = 2x2 block (4 px), pred0 = 2x3 block (6 px): I = 4, U = 6.
  //    gt1 empty, pred1 empty: I = 0, U = 0 -> IoU 1 (empty vs empty).
  s.push_back({text_masks({{"1100", "1100", "0000", "0000"}, {"0000", "0000", "0000", "0000"}}),
               text_masks({{"1110", "1110", "0000", "0000"}, {"0000", "0000", "0000", "0000"}})});
  // B: second row ignored (255): pred covers rows 0-1 (8 px) but row 1 does not count: I = 4, U = 4.
  s.push_back({text_masks({{"1111", "xxxx", "0000", "0000"}}), text_masks({{"1111", "1111", "0000", "0000"}})});
  // C: 3 GT, 1 prediction (too few). gt0 = column 0, pred0 = columns 0-1: I = 4, U = 8.
  //    gt1 (1 px) and gt2 (2 px) have no prediction: IoU 0; teacher-forced adds nothing to I, U.
  s.push_back({text_masks({{"1000", "1000", "1000", "1000"},
                           {"0001", "0000", "0000", "0000"},
                           {"0000", "0000", "0000", "0011"}}),
               text_masks({{"1100", "1100", "1100", "1100"}})});
  // D: 1 GT, 2 predictions (too many). gt0 = pred0 = everything: I = 16, U = 16; pred1 (1 px) is extra.
  s.push_back({text_masks({{"1111", "1111", "1111", "1111"}}),
               text_masks({{"1111", "1111", "1111", "1111"}, {"1000", "0000", "0000", "0000"}})});
  // E: 2 GT (2 px and 1 px), no prediction: teacher-forced skips the image.
  s.push_back({text_masks({{"1100", "0000", "0000", "0000"}, {"0000", "0000", "0000", "0001"}}),
               text_masks({}, 4, 4)});
  // F: empty GT vs a 3-pixel prediction: I = 0, U = 3 -> IoU 0.
  s.push_back({text_masks({{"0000", "0000", "0000", "0000"}}), text_masks({{"1110", "0000", "0000", "0000"}})});
  return s;
}

// Sum of per-mask IoU over the scored masks (same in both modes for this split):
// A: 4/(6+eps) + 1, B: 4/(4+eps), C: 4/(8+eps) + 0 + 0, D: 16/(16+eps), F: 0.
const double kIouSum = 4 / (6 + eps) + 1.0 + 4 / (4 + eps) + 4 / (8 + eps) + 16 / (16 + eps);

TEST(SegMeter, TeacherForcedHandComputed) {
  SegMeter meter(EvalMode::kTeacherForced);
  for (const Image& im : hand_split()) meter.add(im.pred, im.gt);
  const MetricSums& s = meter.sums();
  // Scored GT masks: A 2 + B 1 + C 3 + D 1 + F 1 = 8 (E skipped).
  EXPECT_EQ(s[MetricSums::kMasks], 8);
  EXPECT_DOUBLE_EQ(s[MetricSums::kIouSum], kIouSum);
  // gIoU = sum IoU / (8 + 1e-5) = (0.6666656 + 1 + 0.9999975 + 0.4999994 + 0.9999994) / 8.00001 = 0.5208321;
  // cIoU = (4+0+4+4+16+0) / (6+0+4+8+16+3) = 28 / 37.
  EXPECT_DOUBLE_EQ(meter.giou(), kIouSum / (8 + 1e-5));
  EXPECT_NEAR(meter.giou(), 0.5208321, 1e-7);
  EXPECT_EQ(s[MetricSums::kIntersection], 28);
  EXPECT_EQ(s[MetricSums::kUnion], 37);
  EXPECT_DOUBLE_EQ(meter.ciou(), 28.0 / (37.0 + 1e-10));
  EXPECT_EQ(s[MetricSums::kImagesSeen], 6);
  EXPECT_EQ(s[MetricSums::kImagesScored], 5);
  EXPECT_EQ(s[MetricSums::kImagesSkipped], 1);   // E
  EXPECT_EQ(s[MetricSums::kMasksSkipped], 2);    // E's two masks
  EXPECT_EQ(s[MetricSums::kPredictions], 7);     // 2 + 1 + 1 + 2 + 0 + 1
  EXPECT_EQ(s[MetricSums::kMatched], 6);         // A 2, B 1, C 1, D 1, F 1
  EXPECT_EQ(s[MetricSums::kMissing], 2);         // C's gt1, gt2
  EXPECT_EQ(s[MetricSums::kExtra], 1);           // D's pred1
  EXPECT_EQ(s[MetricSums::kCountExact], 3);      // A, B, F
  EXPECT_EQ(s[MetricSums::kCountTooFew], 2);     // C, E
  EXPECT_EQ(s[MetricSums::kCountTooMany], 1);    // D
}

TEST(SegMeter, TeacherForcedPerImageScores) {
  std::vector<Image> split = hand_split();
  ImageScore c = score_teacher_forced(split[2].pred, split[2].gt);
  ASSERT_EQ(c.masks.size(), 3u);
  EXPECT_FALSE(c.skipped);
  EXPECT_EQ(c.count(), SegCount::kTooFew);
  EXPECT_EQ(c.masks[0].pred_index, 0);
  EXPECT_EQ(c.masks[0].intersection, 4);
  EXPECT_EQ(c.masks[0].union_, 8);
  EXPECT_EQ(c.masks[1].pred_index, -1);
  EXPECT_EQ(c.masks[1].iou, 0.0);
  ImageScore d = score_teacher_forced(split[3].pred, split[3].gt);
  EXPECT_EQ(d.extra_predictions, (std::vector<int64_t>{1}));
  EXPECT_EQ(d.count(), SegCount::kTooMany);
  ImageScore e = score_teacher_forced(split[4].pred, split[4].gt);
  EXPECT_TRUE(e.skipped);
  EXPECT_TRUE(e.masks.empty());
  // An undefined prediction tensor also means "no prediction".
  EXPECT_TRUE(score_teacher_forced(at::Tensor(), split[4].gt).skipped);
  // Empty vs empty is a perfect match (before the meter's averaging).
  ImageScore a = score_teacher_forced(split[0].pred, split[0].gt);
  EXPECT_EQ(a.masks[1].iou, 1.0);
}

TEST(SegMeter, IgnoreMapEqualsGt255) {
  // Image B written with a separate ignore map instead of 255 in the GT gives the same score.
  at::Tensor gt = text_masks({{"1111", "0000", "0000", "0000"}});
  at::Tensor ignore = text_mask({"0000", "1111", "0000", "0000"});
  at::Tensor pred = text_masks({{"1111", "1111", "0000", "0000"}});
  ImageScore with_map = score_teacher_forced(pred, gt, ignore);
  ImageScore without = score_teacher_forced(pred, gt);
  EXPECT_EQ(with_map.masks[0].union_, 4);     // 4 / 4
  EXPECT_EQ(without.masks[0].union_, 8);      // the second row counts: 4 / 8
  EXPECT_DOUBLE_EQ(with_map.masks[0].iou, 4 / (4 + eps));
}

TEST(SegMeter, GenerateHandComputed) {
  SegMeter meter(EvalMode::kGenerate);
  for (const Image& im : hand_split()) meter.add(im.pred, im.gt);
  const MetricSums& s = meter.sums();
  // Every GT mask is scored, E included: 8 + 2 = 10. Matching keeps the pairs of A-D (their IoU is the best
  // assignment), so the IoU sum is unchanged; F's pair has IoU 0, so it is no match (its GT is missing, its
  // prediction extra). The unmatched GT masks add their area to the union: C: 1 + 2 px, E: 2 + 1 px, F: 0 ->
  // U = 37 - 3 (F's pair) + 3 + 3 = 40.
  EXPECT_EQ(s[MetricSums::kMasks], 10);
  EXPECT_DOUBLE_EQ(meter.giou(), kIouSum / (10 + 1e-5));
  EXPECT_EQ(s[MetricSums::kIntersection], 28);
  EXPECT_EQ(s[MetricSums::kUnion], 40);
  EXPECT_DOUBLE_EQ(meter.ciou(), 28.0 / (40.0 + 1e-10));
  EXPECT_EQ(s[MetricSums::kImagesSkipped], 0);
  EXPECT_EQ(s[MetricSums::kImagesScored], 6);
  EXPECT_EQ(s[MetricSums::kMatched], 5);
  EXPECT_EQ(s[MetricSums::kMissing], 5);  // C 2, E 2, F 1
  EXPECT_EQ(s[MetricSums::kExtra], 2);    // D 1, F 1
  EXPECT_EQ(s[MetricSums::kCountExact], 3);
  EXPECT_EQ(s[MetricSums::kCountTooFew], 2);
  EXPECT_EQ(s[MetricSums::kCountTooMany], 1);
}

TEST(SegMeter, GenerateMatchesWhereGreedyFails) {
  // One row of 10 pixels. GT g0 = [0,6), g1 = [6,8); predictions p0 = [0,7), p1 = [1,6).
  //   IoU(g0,p0) = 6/7 = 0.857   IoU(g0,p1) = 5/6 = 0.833
  //   IoU(g1,p0) = 1/8 = 0.125   IoU(g1,p1) = 0/7 = 0
  // Greedy (best pair first) takes g0-p0 and is left with g1-p1: 0.857. The optimum is g0-p1 + g1-p0 = 0.958.
  at::Tensor gt = text_masks({{"1111110000"}, {"0000001100"}});
  at::Tensor pred = text_masks({{"1111111000"}, {"0111110000"}});
  ImageScore s = score_generate(pred, gt);
  ASSERT_EQ(s.masks.size(), 2u);
  EXPECT_EQ(s.masks[0].pred_index, 1);
  EXPECT_EQ(s.masks[1].pred_index, 0);
  EXPECT_TRUE(s.extra_predictions.empty());
  const double greedy = 6 / (7 + eps) + 0.0;
  const double optimum = 5 / (6 + eps) + 1 / (8 + eps);
  EXPECT_GT(optimum, greedy);
  EXPECT_DOUBLE_EQ(s.masks[0].iou + s.masks[1].iou, optimum);
  SegMeter meter(EvalMode::kGenerate);
  meter.add(pred, gt);
  // gIoU = (5/(6+eps) + 1/(8+eps)) / (2 + 1e-5); cIoU = (5 + 1) / (6 + 8).
  EXPECT_DOUBLE_EQ(meter.giou(), optimum / (2 + 1e-5));
  EXPECT_DOUBLE_EQ(meter.ciou(), 6.0 / (14.0 + 1e-10));
  // Teacher-forced pairs them in order instead: g0-p0 + g1-p1 = 6/(7+eps) + 0; cIoU (6+0)/(7+7).
  SegMeter tf(EvalMode::kTeacherForced);
  tf.add(pred, gt);
  EXPECT_DOUBLE_EQ(tf.giou(), greedy / (2 + 1e-5));
  EXPECT_DOUBLE_EQ(tf.ciou(), 6.0 / (14.0 + 1e-10));
}

TEST(SegMeter, GenerateIouZeroIsNoMatch) {
  // g0 = 2 px; p0 (2 px) and p1 (3 px) do not touch it: both pairs have IoU 0, a tie. As a match either would
  // add its area to the cIoU union (U = 4 or 5, depending on the tie-break); unmatched, U = the GT area.
  at::Tensor gt = text_masks({{"1100000000"}});
  for (bool swapped : {false, true}) {
    at::Tensor p0 = text_masks({{"0000001100"}}), p1 = text_masks({{"0000000111"}});
    at::Tensor pred = swapped ? at::cat({p1, p0}) : at::cat({p0, p1});
    ImageScore s = score_generate(pred, gt);
    ASSERT_EQ(s.masks.size(), 1u);
    EXPECT_EQ(s.masks[0].pred_index, -1) << "swapped " << swapped;
    EXPECT_EQ(s.masks[0].intersection, 0);
    EXPECT_EQ(s.masks[0].union_, 2);
    EXPECT_EQ(s.masks[0].iou, 0.0);
    EXPECT_EQ(s.extra_predictions, (std::vector<int64_t>{0, 1}));
    SegMeter meter(EvalMode::kGenerate);
    meter.add(pred, gt);
    EXPECT_EQ(meter.sums()[MetricSums::kUnion], 2);
    EXPECT_EQ(meter.sums()[MetricSums::kMatched], 0);
    EXPECT_EQ(meter.sums()[MetricSums::kMissing], 1);
  }
  // A second GT that p1 overlaps: p1 is matched there, g0 stays unmatched.
  at::Tensor gt2 = text_masks({{"1100000000"}, {"0000000011"}});
  ImageScore s = score_generate(text_masks({{"0000001100"}, {"0000000111"}}), gt2);
  EXPECT_EQ(s.masks[0].pred_index, -1);
  EXPECT_EQ(s.masks[1].pred_index, 1);
  EXPECT_EQ(s.extra_predictions, (std::vector<int64_t>{0}));
}

TEST(SegMeter, GenerateExtraAndMissingPredictions) {
  // 1 GT, 3 predictions: the best one (p2, exact) is matched; p0, p1 are extra.
  at::Tensor gt = text_masks({{"0011"}});
  at::Tensor pred = text_masks({{"1000"}, {"0010"}, {"0011"}});
  ImageScore s = score_generate(pred, gt);
  EXPECT_EQ(s.masks[0].pred_index, 2);
  EXPECT_EQ(s.extra_predictions, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(s.count(), SegCount::kTooMany);
  // Empty GT unmatched (no prediction at all): IoU 0, U = 0 added (nothing to charge).
  ImageScore none = score_generate(text_masks({}, 1, 4), text_masks({{"0000"}, {"0110"}}));
  EXPECT_FALSE(none.skipped);
  EXPECT_EQ(none.masks[0].iou, 0.0);
  EXPECT_EQ(none.masks[0].union_, 0);
  EXPECT_EQ(none.masks[1].union_, 2);
  // No GT at all: every prediction is extra, nothing is scored.
  SegMeter meter(EvalMode::kGenerate);
  meter.add(pred, text_masks({}, 1, 4));
  EXPECT_EQ(meter.sums()[MetricSums::kImagesWithoutGt], 1);
  EXPECT_EQ(meter.sums()[MetricSums::kExtra], 3);
  EXPECT_EQ(meter.sums()[MetricSums::kMasks], 0);
  EXPECT_EQ(meter.giou(), 0.0);
}

TEST(SegMeter, ModesAgreeWhenCountsMatchAndOrderIsBest) {
  // Disjoint GT bands, each predicted by a noisy copy (10 % of pixels flipped, some GT pixels ignored): the
  // diagonal is the best matching, so generate mode pairs exactly like teacher-forced and every sum agrees.
  at::manual_seed(11);
  SegMeter tf(EvalMode::kTeacherForced), gen(EvalMode::kGenerate);
  const int64_t h = 24, w = 32;
  for (int64_t n = 1; n <= 5; ++n) {
    at::Tensor gt = at::zeros({n, h, w}, at::kByte);
    for (int64_t k = 0; k < n; ++k) gt[k].narrow(0, k * h / n, (k + 1) * h / n - k * h / n).fill_(1);
    gt.masked_fill_(at::rand({n, h, w}).lt(0.05), 255);
    at::Tensor pred = gt.eq(1).logical_xor(at::rand({n, h, w}).lt(0.1));
    ImageScore a = tf.add(pred, gt), b = gen.add(pred, gt);
    for (int64_t k = 0; k < n; ++k) EXPECT_EQ(b.masks[static_cast<size_t>(k)].pred_index, k);
    EXPECT_EQ(a.count(), SegCount::kExact);
  }
  for (size_t k = 0; k < MetricSums::kSize; ++k)
    EXPECT_EQ(tf.sums().values[k], gen.sums().values[k]) << MetricSums::name(k);
  EXPECT_GT(tf.giou(), 0.5);
}

TEST(SegMeter, MergeEqualsOneMeterOverTheUnion) {
  for (EvalMode mode : {EvalMode::kTeacherForced, EvalMode::kGenerate}) {
    std::vector<Image> split = hand_split();
    SegMeter all(mode), rank0(mode), rank1(mode);
    for (size_t i = 0; i < split.size(); ++i) {
      all.add(split[i].pred, split[i].gt);
      (i % 2 ? rank1 : rank0).add(split[i].pred, split[i].gt);
    }
    // (a) merge
    SegMeter merged = rank0;
    merged.merge(rank1);
    // (b) what an all-reduce does: element-wise sum of the vectors
    std::vector<double> v0 = rank0.sums().to_vector(), v1 = rank1.sums().to_vector();
    ASSERT_EQ(v0.size(), MetricSums::kSize);
    for (size_t k = 0; k < v0.size(); ++k) v0[k] += v1[k];
    MetricSums reduced = MetricSums::from_vector(v0);
    // (c) a JSON round trip of the whole state (what a gather across ranks does)
    SegMeter restored = SegMeter::state_from_json(merged.state_to_json(), "state");
    for (size_t k = 0; k < MetricSums::kSize; ++k) {
      EXPECT_DOUBLE_EQ(merged.sums().values[k], all.sums().values[k]) << MetricSums::name(k);
      EXPECT_DOUBLE_EQ(reduced.values[k], all.sums().values[k]) << MetricSums::name(k);
      EXPECT_EQ(restored.sums().values[k], merged.sums().values[k]) << MetricSums::name(k);
    }
    EXPECT_DOUBLE_EQ(merged.giou(), all.giou());
    EXPECT_DOUBLE_EQ(merged.ciou(), all.ciou());
    EXPECT_EQ(restored.mode(), mode);
  }
  SegMeter a(EvalMode::kTeacherForced), b(EvalMode::kGenerate);
  EXPECT_NE(test::m2sa_error_of([&] { a.merge(b); }).find("cannot merge a generate meter"), std::string::npos);
  EXPECT_NE(test::m2sa_error_of([&] { MetricSums::from_vector({1.0, 2.0}); }).find("expected 16 values"), std::string::npos);
}

TEST(SegMeter, PerCategoryStatistics) {
  SegMeter meter(EvalMode::kTeacherForced);
  // Image 1 (1 x 4 pixels):
  //   cup (object)       gt 1100, pred 1100: I 2, U 2, IoU 2/(2+eps)
  //   cup:handle (part)  gt 0011, pred 0010: I 1, U 2, IoU 1/(2+eps)
  //   dog (object)       gt 1111, pred 1111: I 4, U 4, IoU 4/(4+eps)
  meter.add(text_masks({{"1100"}, {"0010"}, {"1111"}}), text_masks({{"1100"}, {"0011"}, {"1111"}}), {},
            {{"the cup", "cup", false}, {"its handle", "cup:handle", true}, {"the dog", "dog", false}});
  // Image 2:
  //   cup (object)  gt 1000, pred 1100: I 1, U 2, IoU 1/(2+eps)
  //   cat (object)  gt 0110, pred 0000: I 0, U 2, IoU 0
  //   no category   gt 0001, pred 0001 -> uncategorised
  meter.add(text_masks({{"1100"}, {"0000"}, {"0001"}}), text_masks({{"1000"}, {"0110"}, {"0001"}}), {},
            {{"a cup", "cup", false}, {"a cat", "cat", false}, {"thing", "", false}});
  const CategoryStats& c = meter.categories();
  EXPECT_EQ(c.num_categories(false), 3u);
  EXPECT_EQ(c.num_categories(true), 1u);
  EXPECT_EQ(c.uncategorised_masks(), 1);
  std::vector<CategoryRow> top = c.most_frequent(false, 2);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[0].name, "cup");  // 2 masks
  EXPECT_EQ(top[1].name, "cat");  // 1 mask, ties broken by name (cat < dog)
  EXPECT_EQ(top[0].sums.masks, 2);
  // cup: gIoU = (2/(2+eps) + 1/(2+eps)) / (2 + 1e-5); cIoU = (2 + 1) / (2 + 2) = 0.75.
  EXPECT_DOUBLE_EQ(top[0].sums.giou(), (2 / (2 + eps) + 1 / (2 + eps)) / (2 + 1e-5));
  EXPECT_DOUBLE_EQ(top[0].sums.ciou(), 3.0 / (4.0 + 1e-10));
  std::vector<CategoryRow> bottom = c.least_frequent(false, 2);
  ASSERT_EQ(bottom.size(), 2u);
  EXPECT_EQ(bottom[0].name, "cat");
  EXPECT_EQ(bottom[1].name, "dog");
  EXPECT_EQ(bottom[0].sums.giou(), 0.0);
  EXPECT_DOUBLE_EQ(bottom[1].sums.giou(), (4 / (4 + eps)) / (1 + 1e-5));
  std::vector<CategoryRow> parts = c.most_frequent(true, 10);
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].name, "cup:handle");
  EXPECT_TRUE(parts[0].is_part);
  EXPECT_DOUBLE_EQ(parts[0].sums.ciou(), 1.0 / (2.0 + 1e-10));
  // The categories survive the state round trip and merge additively.
  SegMeter twice = SegMeter::state_from_json(meter.state_to_json(), "state");
  twice.merge(meter);
  EXPECT_EQ(twice.categories().most_frequent(false, 1)[0].sums.masks, 4);
  EXPECT_EQ(twice.categories().uncategorised_masks(), 2);
  // Targets must align with the GT masks.
  EXPECT_NE(test::m2sa_error_of([&] { meter.add(text_masks({{"1"}}), text_masks({{"1"}}), {}, {{"a", "b", false}, {"c", "d", true}}); })
                .find("2 targets for 1 GT masks"),
            std::string::npos);
}

TEST(SegMeter, BadInputsAreClearErrors) {
  SegMeter meter;
  at::Tensor gt = text_masks({{"1100"}});
  EXPECT_NE(test::m2sa_error_of([&] { meter.add(text_masks({{"110"}}), gt); }).find("to match GT masks"), std::string::npos);
  EXPECT_NE(test::m2sa_error_of([&] { meter.add(gt, gt[0]); }).find("expected [Ng, H, W]"), std::string::npos);
  EXPECT_NE(test::m2sa_error_of([&] { meter.add(at::rand({1, 1, 4}), gt); }).find("threshold logits first"), std::string::npos);
  EXPECT_NE(test::m2sa_error_of([&] { parse_eval_mode("greedy"); }).find("\"teacher-forced\" or \"generate\""), std::string::npos);
  EXPECT_EQ(parse_eval_mode("generate"), EvalMode::kGenerate);
  json bad = meter.state_to_json();
  bad["sums"]["bogus"] = 1;
  EXPECT_NE(test::m2sa_error_of([&] { SegMeter::state_from_json(bad, "rank1.json"); }).find("unknown field(s): bogus"),
            std::string::npos);
  // Nothing was accumulated by the failed calls.
  EXPECT_EQ(meter.sums()[MetricSums::kImagesSeen], 0);
}

}  // namespace
}  // namespace m2sa::eval
