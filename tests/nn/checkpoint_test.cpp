#include "m2sa/nn/checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/function.h>

#include "m2sa/nn/layers.h"
#include "test_util.h"

namespace m2sa::nn {
namespace {

// A block with dropout between two linears, so the recomputation must replay the random mask.
struct Block {
  Linear a{16, 32}, b{32, 16};
  at::Tensor operator()(const at::Tensor& x) const {
    return b->forward(at::dropout(at::gelu(a->forward(x)), 0.4, /*train=*/true)) + x;
  }
  std::vector<at::Tensor> params() const {
    std::vector<at::Tensor> p = trainable_parameters(*a);
    for (auto& t : trainable_parameters(*b)) p.push_back(t);
    return p;
  }
};

struct Result {
  at::Tensor out, input_grad;
  std::vector<at::Tensor> grads;
};

Result run(const Block& blk, const at::Tensor& x0, bool ckpt, uint64_t seed) {
  for (auto& p : blk.params()) p.mutable_grad() = at::Tensor();
  at::Tensor x = x0.detach().clone().set_requires_grad(x0.requires_grad());
  at::manual_seed(seed);
  CheckpointFn fn = [&blk](const at::Tensor& in) { return blk(in); };
  at::Tensor h = ckpt ? checkpoint(fn, x, blk.params()) : fn(x);
  h = ckpt ? checkpoint(fn, h, blk.params()) : fn(h);  // two blocks in a row
  (h.pow(2).sum() * 0.5).backward();
  // The backward's replay must leave the generator where the forward left it.
  at::Tensor after = at::rand({3});
  Result r;
  r.out = h.detach();
  if (x.requires_grad()) r.input_grad = x.grad().clone();
  for (auto& p : blk.params()) r.grads.push_back(p.grad().defined() ? p.grad().clone() : at::Tensor());
  r.grads.push_back(after);
  return r;
}

TEST(GradientCheckpoint, SameOutputsAndGradientsAsStoredActivations) {
  at::manual_seed(0);
  Block blk;
  for (bool input_grad : {true, false}) {
    const at::Tensor x = at::randn({4, 5, 16}).set_requires_grad(input_grad);
    const Result plain = run(blk, x, false, 42), ckpt = run(blk, x, true, 42);
    EXPECT_TRUE(test::AllClose(ckpt.out, plain.out, 0.0, "output"));
    ASSERT_EQ(plain.grads.size(), ckpt.grads.size());
    for (std::size_t i = 0; i < plain.grads.size(); ++i)
      EXPECT_TRUE(test::AllClose(ckpt.grads[i], plain.grads[i], 1e-6, "grad " + std::to_string(i)));
    if (input_grad) EXPECT_TRUE(test::AllClose(ckpt.input_grad, plain.input_grad, 1e-6, "input grad"));
    else EXPECT_FALSE(ckpt.input_grad.defined());
  }
}

TEST(GradientCheckpoint, FrozenParametersAndNoGradModeFallBackToPlainCalls) {
  at::manual_seed(0);
  Block blk;
  for (auto& p : blk.params()) p.set_requires_grad(false);
  const at::Tensor x = at::randn({2, 16});
  CheckpointFn fn = [&blk](const at::Tensor& in) { return blk(in); };
  EXPECT_FALSE(checkpoint(fn, x, blk.params()).requires_grad());
  // Only the input needs a gradient; the graph holds one checkpoint node instead of the block's operations.
  {
    at::Tensor xg = x.clone().set_requires_grad(true);
    at::Tensor y = checkpoint(fn, xg, {});
    ASSERT_TRUE(y.grad_fn());
    EXPECT_NE(y.grad_fn()->name().find("CheckpointFunction"), std::string::npos) << y.grad_fn()->name();
  }
  at::Tensor xg = x.clone().set_requires_grad(true);
  checkpoint(fn, xg, trainable_parameters(*blk.a)).sum().backward();
  EXPECT_TRUE(xg.grad().defined());
  {
    at::NoGradGuard g;
    EXPECT_FALSE(checkpoint(fn, xg, {}).requires_grad());
  }
}

}  // namespace
}  // namespace m2sa::nn
