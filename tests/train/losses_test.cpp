#include "m2sa/train/losses.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

#include "m2sa/core/error.h"
#include "test_util.h"

namespace m2sa::train {
namespace {

// BCE-with-logits of one element, by hand: log(1 + e^x) - x t.
double bce(double x, double t) { return std::log1p(std::exp(x)) - x * t; }
double sig(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// Per-mask dice by the reference formula, in double.
double dice_one(const std::vector<double>& x, const std::vector<double>& t) {
  double num = 0, dp = 0, dt = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num += sig(x[i]) / 1000 * t[i];
    dp += sig(x[i]) / 1000;
    dt += t[i] / 1000;
  }
  return 1 - (2 * num + 1e-6) / (dp + dt + 1e-6);
}

TEST(TrainLosses, SigmoidCeAndDiceHandValues) {
  // One mask of 1x2 pixels: logits [0, ln 3], targets [1, 0].
  at::Tensor x = at::tensor({0.0f, std::log(3.0f)}).view({1, 1, 2});
  at::Tensor t = at::tensor({1.0f, 0.0f}).view({1, 1, 2});
  const double expected_bce = (std::log(2.0) + std::log(4.0)) / 2 / (1 + 1e-8);
  EXPECT_NEAR(sigmoid_ce_loss(x, t, 1).item<double>(), expected_bce, 1e-6);
  // p = [0.5, 0.75]: num = 2 * 0.0005 = 0.001, den = 0.00125 + 0.001 = 0.00225.
  const double expected_dice = (1 - (0.001 + 1e-6) / (0.00225 + 1e-6)) / (1 + 1e-8);
  EXPECT_NEAR(dice_loss(x, t, 1).item<double>(), expected_dice, 1e-6);
  EXPECT_NEAR(expected_dice * (1 + 1e-8), dice_one({0.0, std::log(3.0)}, {1, 0}), 1e-12);
}

TEST(TrainLosses, MicroBatchAggregationIsPerMaskMean) {
  at::manual_seed(3);
  // Image 0: 2 masks, image 1: 0 masks (VQA), image 2: 1 mask; sizes differ per image.
  std::vector<at::Tensor> preds = {at::randn({2, 3, 4}), at::randn({0, 5, 5}), at::randn({1, 2, 3})};
  std::vector<at::Tensor> gts = {(at::rand({2, 3, 4}) > 0.5).to(at::kFloat), at::zeros({0, 5, 5}),
                                 (at::rand({1, 2, 3}) > 0.5).to(at::kFloat)};
  double bce_sum = 0, dice_sum = 0;
  for (size_t i = 0; i < preds.size(); ++i) {
    for (int64_t m = 0; m < preds[i].size(0); ++m) {
      at::Tensor p = preds[i][m].flatten().to(at::kDouble), g = gts[i][m].flatten().to(at::kDouble);
      std::vector<double> pv(p.data_ptr<double>(), p.data_ptr<double>() + p.numel());
      std::vector<double> gv(g.data_ptr<double>(), g.data_ptr<double>() + g.numel());
      double b = 0;
      for (size_t k = 0; k < pv.size(); ++k) b += bce(pv[k], gv[k]);
      bce_sum += b / pv.size();
      dice_sum += dice_one(pv, gv);
    }
  }
  MaskLossResult r = mask_losses(preds, gts, 2.0, 0.5);
  EXPECT_EQ(r.num_masks, 3);
  EXPECT_NEAR(r.bce.item<double>(), 2.0 * bce_sum / 3, 1e-6);
  EXPECT_NEAR(r.dice.item<double>(), 0.5 * dice_sum / 3, 1e-6);

  // The offset form over concatenated masks gives the same numbers (same resolution needed there).
  at::Tensor p = at::randn({3, 4, 4}), g = (at::rand({3, 4, 4}) > 0.5).to(at::kFloat);
  MaskLossResult a = mask_losses(p, g, {0, 2, 2, 3});
  MaskLossResult b = mask_losses({p.slice(0, 0, 2), p.slice(0, 2, 2), p.slice(0, 2, 3)},
                                 {g.slice(0, 0, 2), g.slice(0, 2, 2), g.slice(0, 2, 3)});
  EXPECT_EQ(a.bce.item<float>(), b.bce.item<float>());
  EXPECT_EQ(a.dice.item<float>(), b.dice.item<float>());
}

TEST(TrainLosses, NoMasksGivesZeroWithGradient) {
  at::Tensor p = at::randn({0, 4, 4}).requires_grad_(true);
  MaskLossResult r = mask_losses({p}, {at::zeros({0, 4, 4})});
  EXPECT_EQ(r.num_masks, 0);
  EXPECT_EQ(r.bce.item<double>(), 0.0);
  EXPECT_EQ(r.dice.item<double>(), 0.0);
  (r.bce + r.dice).backward();
  EXPECT_TRUE(p.grad().defined());
}

TEST(TrainLosses, MismatchedMaskCountsNameTheImage) {
  try {
    mask_losses({at::zeros({1, 2, 2}), at::zeros({2, 2, 2})}, {at::zeros({1, 2, 2}), at::zeros({1, 2, 2})});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("image 1"), std::string::npos) << e.what();
  }
  EXPECT_THROW(mask_losses(at::zeros({3, 2, 2}), at::zeros({3, 2, 2}), {0, 2}), Error);
}

TEST(TrainLosses, ShiftedCrossEntropyIgnoresMinus100) {
  // B=1, T=4, V=3. Positions 0..2 predict labels 1..3 = [-100, 2, 0]: two supervised tokens.
  at::Tensor logits = at::tensor({0.1f, 0.2f, 0.3f, 1.0f, -1.0f, 0.5f, 2.0f, 0.0f, -2.0f, 9.f, 9.f, 9.f})
                          .view({1, 4, 3});
  at::Tensor labels = at::tensor(std::vector<int64_t>{5, -100, 2, 0}).view({1, 4});
  auto nll = [](std::vector<double> l, int c) {
    double z = 0;
    for (double v : l) z += std::exp(v);
    return std::log(z) - l[c];
  };
  const double expected = (nll({1.0, -1.0, 0.5}, 2) + nll({2.0, 0.0, -2.0}, 0)) / 2;
  EXPECT_NEAR(lm_cross_entropy(logits, labels).item<double>(), expected, 1e-6);
  // Over a batch: the mean is over all supervised tokens, not per sequence.
  at::Tensor l2 = at::cat({logits, logits}), y2 = at::tensor(std::vector<int64_t>{0, 1, -100, -100, 0, -100, 2, 0}).view({2, 4});
  const double e2 = (nll({0.1, 0.2, 0.3}, 1) + nll({1.0, -1.0, 0.5}, 2) + nll({2.0, 0.0, -2.0}, 0)) / 3;
  EXPECT_NEAR(lm_cross_entropy(l2, y2).item<double>(), e2, 1e-6);

  // Nothing supervised: 0 (PyTorch would give NaN) and a zero gradient.
  at::Tensor lg = logits.clone().requires_grad_(true);
  at::Tensor none = at::full({1, 4}, int64_t{-100});
  at::Tensor z = lm_cross_entropy(lg, none);
  EXPECT_EQ(z.item<double>(), 0.0);
  z.backward();
  EXPECT_EQ(lg.grad().abs().sum().item<double>(), 0.0);

  EXPECT_THROW(lm_cross_entropy(logits, at::tensor(std::vector<int64_t>{0, 7, 0, 0}).view({1, 4})), Error);
}

TEST(TrainLosses, CombinedObjectiveUsesTheWeights) {
  at::manual_seed(5);
  std::vector<at::Tensor> p = {at::randn({1, 3, 3})}, g = {(at::rand({1, 3, 3}) > 0.5).to(at::kFloat)};
  at::Tensor ce = at::tensor(1.5f);
  LossWeights w;  // paper values: ce 1, bce 0.5, dice 2
  LossParts parts = m2sa_loss(ce, p, g, w);
  MaskLossResult unweighted = mask_losses(p, g);
  EXPECT_NEAR(parts.ce.item<double>(), 1.5, 1e-7);
  EXPECT_NEAR(parts.mask_bce.item<double>(), 0.5 * unweighted.bce.item<double>(), 1e-6);
  EXPECT_NEAR(parts.mask_dice.item<double>(), 2.0 * unweighted.dice.item<double>(), 1e-6);
  EXPECT_NEAR(parts.loss.item<double>(),
              1.5 + parts.mask_bce.item<double>() + parts.mask_dice.item<double>(), 1e-6);
  json j = {{"bce_loss_weight", 2.0}, {"dice_loss_weight", 0.5}};
  LossWeights code = LossWeights::from_json(JsonReader(j, "cfg.json"));
  EXPECT_EQ(code.bce_loss_weight, 2.0);
  EXPECT_EQ(code.ce_loss_weight, 1.0);
  json bad = {{"bce_weight", 2.0}};
  EXPECT_THROW(LossWeights::from_json(JsonReader(bad, "cfg.json")), Error);
}

}  // namespace
}  // namespace m2sa::train
