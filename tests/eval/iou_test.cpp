#include "m2sa/eval/iou.h"

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

// A literal port of the reference (MMR:utils/utils.py intersectionAndUnionGPU with K=2, ignore_index=255),
// written with at::histc, to check our counting formulation against the reference's histogram one.
IouAreas reference_port(const at::Tensor& pred, const at::Tensor& gt) {
  at::Tensor output = pred.to(at::kFloat).reshape(-1).clone();
  at::Tensor target = gt.to(at::kFloat).reshape(-1);
  output.masked_fill_(target.eq(255), 255);
  at::Tensor intersection = output.masked_select(output.eq(target));
  at::Tensor ai = at::histc(intersection, 2, 0, 1);
  at::Tensor ao = at::histc(output, 2, 0, 1);
  at::Tensor at_ = at::histc(target, 2, 0, 1);
  at::Tensor au = ao + at_ - ai;
  IouAreas r;
  for (int c = 0; c < 2; ++c) {
    r.intersection[c] = static_cast<int64_t>(ai[c].item<float>());
    r.union_[c] = static_cast<int64_t>(au[c].item<float>());
    r.area_gt[c] = static_cast<int64_t>(at_[c].item<float>());
  }
  return r;
}

TEST(Iou, HandComputedAreasWithIgnore) {
  at::Tensor gt = text_mask({"11x0",  //
                             "1100",  //
                             "0000",  //
                             "xx00"});
  at::Tensor pred = text_mask({"1110",  //
                               "0100",  //
                               "0010",  //
                               "1100"});
  // Ignored pixels: (0,2), (3,0), (3,1); the prediction there is dropped (the reference sets it to 255).
  // Class 1: pred valid = (0,0) (0,1) (1,1) (2,2) -> 4; gt = (0,0) (0,1) (1,0) (1,1) -> 4;
  //          I = (0,0) (0,1) (1,1) -> 3; U = 4 + 4 - 3 = 5.
  // Class 0: 13 valid pixels; pred 0 = 13 - 4 = 9; gt 0 = 9; I = the 9 gt-0 pixels minus (2,2) -> 8;
  //          U = 9 + 9 - 8 = 10.
  IouAreas a = intersection_and_union(pred, gt);
  EXPECT_EQ(a.intersection[1], 3);
  EXPECT_EQ(a.union_[1], 5);
  EXPECT_EQ(a.area_gt[1], 4);
  EXPECT_EQ(a.intersection[0], 8);
  EXPECT_EQ(a.union_[0], 10);
  EXPECT_EQ(a.area_gt[0], 9);
  // bool predictions give the same.
  IouAreas b = intersection_and_union(pred.to(at::kBool), gt.to(at::kLong));
  EXPECT_EQ(b.intersection, a.intersection);
  EXPECT_EQ(b.union_, a.union_);
}

TEST(Iou, MatchesReferenceHistogramPort) {
  at::manual_seed(7);
  for (int trial = 0; trial < 20; ++trial) {
    const int64_t h = 5 + trial, w = 9 + 2 * trial;
    at::Tensor pred = at::randint(0, 2, {h, w}, at::kByte);
    at::Tensor gt = at::randint(0, 2, {h, w}, at::kByte);
    gt.masked_fill_(at::rand({h, w}).lt(0.2), 255);
    IouAreas ours = intersection_and_union(pred, gt);
    IouAreas ref = reference_port(pred, gt);
    EXPECT_EQ(ours.intersection, ref.intersection) << "trial " << trial;
    EXPECT_EQ(ours.union_, ref.union_) << "trial " << trial;
    EXPECT_EQ(ours.area_gt, ref.area_gt) << "trial " << trial;
  }
}

TEST(Iou, MaskIouRule) {
  EXPECT_EQ(mask_iou(0, 0), 1.0);  // empty GT and empty prediction: 0 / 1e-5 + 1
  EXPECT_EQ(mask_iou(0, 3), 0.0);  // empty GT, 3 predicted pixels
  EXPECT_DOUBLE_EQ(mask_iou(3, 5), 3.0 / (5.0 + 1e-5));
  EXPECT_DOUBLE_EQ(mask_iou(7, 7), 7.0 / (7.0 + 1e-5));
  // Empty vs empty through the areas: all-ignored GT and any prediction is also U == 0.
  IouAreas a = intersection_and_union(text_mask({"11", "10"}), text_mask({"xx", "xx"}));
  EXPECT_EQ(a.union_[1], 0);
  EXPECT_EQ(mask_iou(a.intersection[1], a.union_[1]), 1.0);
}

TEST(Iou, BatchAndPairwiseAgreeWithSinglePairs) {
  at::manual_seed(3);
  const int64_t ng = 4, np = 3, h = 11, w = 13;
  at::Tensor gt = at::randint(0, 2, {ng, h, w}, at::kByte);
  gt.masked_fill_(at::rand({ng, h, w}).lt(0.15), 255);
  at::Tensor pred = at::rand({np, h, w}).lt(0.4);
  auto [inter, uni] = pairwise_intersection_union(pred, gt);
  ASSERT_EQ(inter.sizes(), (at::IntArrayRef{ng, np}));
  for (int64_t i = 0; i < ng; ++i)
    for (int64_t j = 0; j < np; ++j) {
      IouAreas a = intersection_and_union(pred[j], gt[i]);
      EXPECT_EQ(inter[i][j].item<int64_t>(), a.intersection[1]);
      EXPECT_EQ(uni[i][j].item<int64_t>(), a.union_[1]);
    }
  std::vector<IouAreas> batch = intersection_and_union_batch(pred, gt.narrow(0, 0, np));
  ASSERT_EQ(batch.size(), 3u);
  for (int64_t k = 0; k < np; ++k) {
    IouAreas a = intersection_and_union(pred[k], gt[k]);
    EXPECT_EQ(batch[static_cast<size_t>(k)].intersection, a.intersection);
    EXPECT_EQ(batch[static_cast<size_t>(k)].union_, a.union_);
  }
  EXPECT_TRUE(intersection_and_union_batch(pred.narrow(0, 0, 0), gt.narrow(0, 0, 0)).empty());
  auto [i0, u0] = pairwise_intersection_union(pred.narrow(0, 0, 0), gt);
  EXPECT_EQ(i0.sizes(), (at::IntArrayRef{ng, 0}));
}

TEST(Iou, IgnoreMapActsLike255) {
  at::Tensor gt = text_masks({{"11", "00"}, {"01", "01"}});
  at::Tensor pred = text_masks({{"11", "11"}, {"11", "11"}});
  at::Tensor ign = text_mask({"10", "01"});  // nonzero = ignored, shared by both GT masks
  // Same as writing 255 into the GT: {"x1", "0x"} and {"x1", "0x"}.
  at::Tensor gt255 = text_masks({{"x1", "0x"}, {"x1", "0x"}});
  std::vector<IouAreas> with_map = intersection_and_union_batch(pred, gt, ign);
  std::vector<IouAreas> with_255 = intersection_and_union_batch(pred, gt255);
  for (size_t k = 0; k < 2; ++k) {
    EXPECT_EQ(with_map[k].intersection, with_255[k].intersection);
    EXPECT_EQ(with_map[k].union_, with_255[k].union_);
    EXPECT_EQ(with_map[k].area_gt, with_255[k].area_gt);
  }
  // mask 0: valid pixels (0,1) gt 1 and (1,0) gt 0, prediction 1 on both: I 1, U 2.
  EXPECT_EQ(with_map[0].intersection[1], 1);
  EXPECT_EQ(with_map[0].union_[1], 2);
  // Per-mask ignore [N, H, W]: only mask 1 loses its top row.
  at::Tensor per_mask = at::stack({text_mask({"00", "00"}), text_mask({"11", "00"})}).to(at::kBool);
  auto [inter, uni] = pairwise_intersection_union(pred, gt, per_mask);
  EXPECT_EQ(uni[0][0].item<int64_t>(), 4);  // mask 0 untouched: pred 4 px, gt 2 px, I 2 -> U 4
  EXPECT_EQ(inter[1][0].item<int64_t>(), 1);  // mask 1 bottom row: gt (1,1) only
  EXPECT_EQ(uni[1][0].item<int64_t>(), 2);
  EXPECT_EQ(gt_foreground_areas(gt, per_mask), (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(gt_foreground_areas(gt, ign), (std::vector<int64_t>{1, 1}));
  EXPECT_NE(test::m2sa_error_of([&] { intersection_and_union_batch(pred, gt, at::zeros({3, 2}, at::kByte)); })
                .find("ignore map must be"),
            std::string::npos);
}

TEST(Iou, BadInputsAreClearErrors) {
  at::Tensor gt = text_mask({"10", "01"});
  EXPECT_NE(test::m2sa_error_of([&] { intersection_and_union(at::zeros({2, 2}), gt); }).find("threshold logits first"),
            std::string::npos);
  EXPECT_NE(test::m2sa_error_of([&] { intersection_and_union(at::full({2, 2}, 255, at::kByte), gt); }).find("only 0 and 1"),
            std::string::npos);
  EXPECT_NE(test::m2sa_error_of([&] { intersection_and_union(gt, at::full({2, 2}, 2, at::kByte)); }).find("only 0, 1 and 255"),
            std::string::npos);
  EXPECT_NE(test::m2sa_error_of([&] { intersection_and_union(gt, gt.to(at::kFloat)); }).find("integer tensor"),
            std::string::npos);
  EXPECT_NE(test::m2sa_error_of([&] { intersection_and_union(at::zeros({2, 3}, at::kByte), gt); }).find("same shape"),
            std::string::npos);
  // 256 must not wrap to 0 in a uint8 conversion.
  EXPECT_NE(test::m2sa_error_of([&] { intersection_and_union(gt, at::full({2, 2}, 256, at::kLong)); }).find("outside [0, 255]"),
            std::string::npos);
  EXPECT_NE(test::m2sa_error_of([&] { intersection_and_union(at::full({2, 2}, 257, at::kInt), gt); }).find("outside [0, 1]"),
            std::string::npos);
  EXPECT_NE(test::m2sa_error_of([&] { gt_foreground_areas(at::full({1, 2, 2}, 7, at::kByte)); }).find("only 0, 1 and 255"),
            std::string::npos);
  EXPECT_TRUE(at::equal(threshold_logits(at::tensor({-1.0f, 0.0f, 0.5f})), at::tensor({0, 0, 1}, at::kByte).to(at::kBool)));
  EXPECT_NE(test::m2sa_error_of([&] { threshold_logits(gt); }).find("floating-point"), std::string::npos);
}

}  // namespace
}  // namespace m2sa::eval
