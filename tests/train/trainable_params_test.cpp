#include "m2sa/train/trainable_params.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/types.h>
#include <torch/nn/utils/clip_grad.h>

#include "m2sa/core/error.h"
#include "test_util.h"
#include "train/toy_task.h"

namespace m2sa::train {
namespace {

TEST(TrainTrainableParams, FromModuleTakesOnlyParametersThatRequireGrad) {
  test::ToyNet net(16);
  TrainableParams p = TrainableParams::from_module(*net);
  for (const std::string& n : p.names()) EXPECT_EQ(n.find("frozen"), std::string::npos) << n;
  EXPECT_EQ(p.names().front(), "conv1.weight");
  EXPECT_FALSE(p.has_separate_masters());
  EXPECT_EQ(p.masters()[0].data_ptr(), p.params()[0].data_ptr());  // fp32: the master is the parameter
}

TEST(TrainTrainableParams, AccumulatesMicroBatchGradientsInFp32Buckets) {
  at::Tensor a = at::randn({3, 4}).requires_grad_(true), b = at::randn({5}).requires_grad_(true);
  TrainableParamsOptions o;
  o.bucket_bytes = 13 * 4;  // a (12 values) fills the first bucket, b gets the second
  TrainableParams p({{"a", a}, {"b", b}}, o);
  EXPECT_EQ(p.grad_buckets().size(), 2u);
  at::Tensor x1 = at::randn({4}), x2 = at::randn({4});
  (a.matmul(x1).sum() + b.sum()).backward();
  p.accumulate_grads();
  EXPECT_FALSE(a.grad().defined());  // released after accumulation
  (a.matmul(x2).sum() * 2).backward();
  p.accumulate_grads();
  at::Tensor expected_a = x1.expand({3, 4}) + 2 * x2.expand({3, 4});
  EXPECT_TRUE(test::AllClose(p.grads()[0], expected_a, 1e-6, "grad a"));
  EXPECT_TRUE(test::AllClose(p.grads()[1], at::ones({5}), 0, "grad b"));
  EXPECT_TRUE(test::AllClose(p.grad_buckets()[1], at::ones({5}), 0, "bucket of b"));
  p.scale_grads(0.5);
  EXPECT_TRUE(test::AllClose(p.grads()[1], at::full({5}, 0.5), 0, "scaled"));
  p.zero_grads();
  EXPECT_EQ(p.grads()[0].abs().sum().item<double>(), 0.0);
}

TEST(TrainTrainableParams, Bf16ParametersGetFp32MastersAndFp32Accumulation) {
  at::Tensor w = at::randn({8}).to(at::kBFloat16).requires_grad_(true);
  TrainableParams p({{"w", w}});
  EXPECT_TRUE(p.has_separate_masters());
  EXPECT_EQ(p.masters()[0].scalar_type(), at::kFloat);
  EXPECT_TRUE(at::equal(p.masters()[0], w.detach().to(at::kFloat)));
  // Many tiny bf16 gradients: their fp32 sum is exact where a bf16 sum would have stalled.
  for (int i = 0; i < 300; ++i) {
    (w.to(at::kFloat).sum() * (1.0 / 256)).backward();
    p.accumulate_grads();
  }
  EXPECT_TRUE(test::AllClose(p.grads()[0], at::full({8}, 300.0 / 256), 1e-6, "fp32 accumulation"));
  // An update of the master below bf16's resolution accumulates there, and the model gets the rounded value.
  at::NoGradGuard g;
  p.masters()[0].add_(1e-3);
  p.copy_masters_to_params();
  EXPECT_TRUE(at::equal(w.detach(), p.masters()[0].to(at::kBFloat16)));
}

TEST(TrainTrainableParams, ClipGradNormMatchesTorchBitwise) {
  at::manual_seed(4);
  for (double max_norm : {1.0, 100.0}) {
    std::vector<at::Tensor> mine_params, ref_params;
    std::vector<std::pair<std::string, at::Tensor>> named;
    for (int i = 0; i < 4; ++i) {
      at::Tensor t = at::randn({i + 2, 3}).requires_grad_(true);
      named.emplace_back("p" + std::to_string(i), t);
      ref_params.push_back(at::zeros({i + 2, 3}).requires_grad_(true));
    }
    TrainableParams p(named);
    for (int i = 0; i < 4; ++i) {
      at::Tensor g = at::randn({i + 2, 3}) * 3;
      p.grads()[i].copy_(g);
      ref_params[i].mutable_grad() = g.clone();
    }
    const double ours = p.clip_grad_norm(max_norm);
    const double theirs = torch::nn::utils::clip_grad_norm_(ref_params, max_norm);
    EXPECT_EQ(ours, theirs);
    for (int i = 0; i < 4; ++i) EXPECT_TRUE(at::equal(p.grads()[i], ref_params[i].grad())) << "max_norm " << max_norm;
  }
}

TEST(TrainTrainableParams, LayoutCheckNamesEveryDifference) {
  test::TempDir dir;
  TrainableParams p({{"a", at::zeros({2, 3}).requires_grad_(true)}, {"b", at::zeros({4}).requires_grad_(true)}});
  write_safetensors(dir / "w.safetensors", {{"a", at::zeros({3, 2})}, {"c", at::zeros({1})}});
  try {
    p.load_masters(SafetensorsReader(dir / "w.safetensors"));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("'a' is [3, 2] in the checkpoint but [2, 3] in the model"), std::string::npos) << msg;
    EXPECT_NE(msg.find("missing 'b' [4]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unexpected 'c'"), std::string::npos) << msg;
  }
  write_safetensors(dir / "ok.safetensors", {{"a", at::ones({2, 3})}, {"b", at::full({4}, 2.0)}});
  p.load_masters(SafetensorsReader(dir / "ok.safetensors"));
  EXPECT_EQ(p.params()[1].sum().item<double>(), 8.0);
  EXPECT_THROW(TrainableParams({{"x", at::zeros({2})}}), Error);  // does not require grad
}

}  // namespace
}  // namespace m2sa::train
