#include "m2sa/train/adamw.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/optim/adamw.h>

#include <cmath>

#include "m2sa/core/error.h"
#include "test_util.h"

namespace m2sa::train {
namespace {

TEST(TrainAdamW, MatchesAHandDerivedStep) {
  // p = 1, lr 0.1, wd 0.01, betas (0.9, 0.95), eps 1e-8; gradients 0.5 then -0.25.
  at::Tensor p = at::full({1}, 1.0f);
  AdamWConfig c;
  c.lr = 0.1;
  c.weight_decay = 0.01;
  AdamW opt({"p"}, {p}, c);
  opt.step(0.1, {at::full({1}, 0.5f)});
  // Step 1: p = 0.999; m = 0.05; v = 0.0125; m_hat = 0.5, v_hat = 0.25 -> p -= 0.1 * 0.5 / (0.5 + 1e-8).
  double pe = 1.0 * (1 - 0.1 * 0.01);
  double m = 0.05, v = 0.05 * 0.25;
  pe -= 0.1 / (1 - 0.9) * m / (std::sqrt(v) / std::sqrt(1 - 0.95) + 1e-8);
  EXPECT_NEAR(p.item<double>(), pe, 1e-7);
  EXPECT_NEAR(pe, 0.899, 1e-7);
  opt.step(0.05, {at::full({1}, -0.25f)});
  pe *= 1 - 0.05 * 0.01;
  m = 0.9 * m + 0.1 * -0.25;
  v = 0.95 * v + 0.05 * 0.0625;
  pe -= 0.05 / (1 - 0.81) * m / (std::sqrt(v) / std::sqrt(1 - 0.95 * 0.95) + 1e-8);
  EXPECT_NEAR(p.item<double>(), pe, 1e-7);
  EXPECT_EQ(opt.steps(), 2);
  EXPECT_NEAR(opt.exp_avg()[0].item<double>(), m, 1e-8);
  EXPECT_NEAR(opt.exp_avg_sq()[0].item<double>(), v, 1e-9);
}

TEST(TrainAdamW, AgreesWithTorchOptimAdamW) {
  at::manual_seed(11);
  const std::vector<std::vector<int64_t>> shapes = {{7, 5}, {5}, {3, 2, 4}};
  std::vector<at::Tensor> ours, theirs;
  std::vector<std::string> names;
  for (size_t i = 0; i < shapes.size(); ++i) {
    at::Tensor t = at::randn(shapes[i]);
    ours.push_back(t.clone());
    theirs.push_back(t.clone().requires_grad_(true));
    names.push_back("p" + std::to_string(i));
  }
  AdamWConfig c;
  c.lr = 1e-2;
  c.weight_decay = 0.1;
  AdamW opt(names, ours, c);
  torch::optim::AdamW ref(theirs, torch::optim::AdamWOptions(1e-2).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1));
  double worst = 0;
  for (int step = 0; step < 10; ++step) {
    const double lr = 1e-2 * (step + 1) / 10.0;  // a changing lr, as the schedule does
    static_cast<torch::optim::AdamWOptions&>(ref.param_groups()[0].options()).lr(lr);
    std::vector<at::Tensor> grads;
    for (size_t i = 0; i < shapes.size(); ++i) {
      grads.push_back(at::randn(shapes[i]));
      theirs[i].mutable_grad() = grads.back().clone();
    }
    opt.step(lr, grads);
    ref.step();
    for (size_t i = 0; i < shapes.size(); ++i) worst = std::max(worst, test::max_abs_diff(ours[i], theirs[i].detach()));
  }
  RecordProperty("max_abs_diff", std::to_string(worst));
  EXPECT_LE(worst, 1e-7) << "max abs difference to torch::optim::AdamW after 10 steps";
}

TEST(TrainAdamW, StateRoundTripsThroughSafetensorsAndContinuesExactly) {
  test::TempDir dir;
  at::manual_seed(2);
  AdamWConfig c;
  c.weight_decay = 0.05;
  c.no_decay_1d = true;
  at::Tensor w = at::randn({4, 3}), b = at::randn({4});
  AdamW a({"w", "b"}, {w, b}, c);
  ASSERT_EQ(a.groups().size(), 2u);
  EXPECT_EQ(a.groups()[0].name, "decay");
  EXPECT_EQ(a.groups()[1].indices, std::vector<size_t>{1});
  std::vector<std::vector<at::Tensor>> grads;
  for (int i = 0; i < 6; ++i) grads.push_back({at::randn({4, 3}), at::randn({4})});
  for (int i = 0; i < 3; ++i) a.step(1e-3, grads[i]);
  write_safetensors(dir / "opt.safetensors", a.state_tensors(), a.state_metadata());
  at::Tensor w2 = w.clone(), b2 = b.clone();
  AdamW restored({"w", "b"}, {w2, b2}, c);
  restored.load_state(SafetensorsReader(dir / "opt.safetensors"));
  EXPECT_EQ(restored.steps(), 3);
  for (int i = 3; i < 6; ++i) {
    a.step(1e-3, grads[i]);
    restored.step(1e-3, grads[i]);
  }
  EXPECT_TRUE(at::equal(w, w2));
  EXPECT_TRUE(at::equal(b, b2));
  // The no-decay group really skipped weight decay: a bias with zero gradients does not move, a weight does.
  at::Tensor wz = at::ones({2, 2}), bz = at::ones({2});
  AdamW z({"w", "b"}, {wz, bz}, c);
  z.step(0.1, {at::zeros({2, 2}), at::zeros({2})});
  EXPECT_TRUE(at::equal(bz, at::ones({2})));
  EXPECT_FALSE(at::equal(wz, at::ones({2, 2})));
}

TEST(TrainAdamW, LoadRefusesAnotherLayoutNamingTheParameters) {
  test::TempDir dir;
  AdamW a({"w", "b"}, {at::zeros({4, 3}), at::zeros({4})}, AdamWConfig{});
  write_safetensors(dir / "opt.safetensors", a.state_tensors(), a.state_metadata());
  AdamW other({"w", "c"}, {at::zeros({4, 2}), at::zeros({4})}, AdamWConfig{});
  try {
    other.load_state(SafetensorsReader(dir / "opt.safetensors"));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("exp_avg/w' is F32 [4, 3], expected F32 [4, 2]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("missing 'exp_avg/c'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unexpected 'exp_avg_sq/b'"), std::string::npos) << msg;
  }
  EXPECT_THROW(AdamW({"w"}, {at::zeros({2}, at::kBFloat16)}, AdamWConfig{}), Error);  // masters are fp32
}

}  // namespace
}  // namespace m2sa::train
