#include "m2sa/nn/fused_linears.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include "m2sa/nn/layers.h"
#include "test_util.h"

namespace m2sa::nn {
namespace {

std::vector<Linear> frozen_linears(std::vector<int64_t> outs, int64_t in) {
  at::manual_seed(3);
  std::vector<Linear> layers;
  for (int64_t out : outs) {
    Linear l(in, out, /*bias=*/false);
    l->weight.set_requires_grad(false);
    layers.push_back(l);
  }
  return layers;
}

TEST(FusedLinears, OneMatmulEqualsTheLayersAndKeepsTheirWeights) {
  std::vector<Linear> layers = frozen_linears({24, 8, 16}, 12);
  const at::Tensor x = at::randn({2, 5, 12});
  std::vector<at::Tensor> before, expected;
  for (const Linear& l : layers) {
    before.push_back(l->weight.clone());
    expected.push_back(l->forward(x));
  }
  std::optional<FusedLinears> fused = FusedLinears::fuse(layers);
  ASSERT_TRUE(fused.has_value());
  EXPECT_TRUE(fused->valid());
  EXPECT_EQ(fused->weight().sizes(), (at::IntArrayRef{48, 12}));
  const std::vector<at::Tensor> got = fused->forward(x);
  ASSERT_EQ(got.size(), 3u);
  for (std::size_t i = 0; i < layers.size(); ++i) {
    // The registered parameter itself is the view: loading writes into the fused weight, export reads from it.
    EXPECT_TRUE(layers[i]->named_parameters()["weight"].is_alias_of(fused->weight()));
    EXPECT_TRUE(at::equal(layers[i]->weight, before[i]));
    EXPECT_TRUE(test::AllClose(got[i], expected[i], 1e-5, "fused output " + std::to_string(i)));
  }
  // A load into the layer's parameter is seen by the fused matmul.
  {
    at::NoGradGuard no_grad;
    layers[1]->named_parameters()["weight"].fill_(0.5);
  }
  EXPECT_TRUE(test::AllClose(fused->forward(x)[1], layers[1]->forward(x), 1e-5, "after a load"));
}

TEST(FusedLinears, RefusesWhatItCannotComputeExactly) {
  std::string why;
  {
    std::vector<Linear> layers = frozen_linears({4, 4}, 6);
    layers[0]->weight.set_requires_grad(true);
    EXPECT_FALSE(FusedLinears::fuse(layers, &why).has_value());
    EXPECT_NE(why.find("requires grad"), std::string::npos) << why;
  }
  {
    std::vector<Linear> layers{Linear(6, 4, /*bias=*/true), Linear(6, 4, /*bias=*/true)};
    for (auto& l : layers)
      for (auto& p : l->parameters()) p.set_requires_grad(false);
    EXPECT_FALSE(FusedLinears::fuse(layers, &why).has_value());
    EXPECT_NE(why.find("bias"), std::string::npos) << why;
  }
  {
    std::vector<Linear> layers = frozen_linears({4, 4}, 6);
    layers[1]->enable_lora(2, 4.0, 0.0);
    EXPECT_FALSE(FusedLinears::fuse(layers, &why).has_value());
    EXPECT_NE(why.find("LoRA"), std::string::npos) << why;
  }
  {
    std::vector<Linear> layers = frozen_linears({4, 4}, 6);
    layers.push_back(frozen_linears({4}, 5).front());
    EXPECT_FALSE(FusedLinears::fuse(layers, &why).has_value());
  }
}

TEST(FusedLinears, AnAdapterOrACastAfterFusingTurnsTheFusedPathOff) {
  {
    std::vector<Linear> layers = frozen_linears({4, 4}, 6);
    std::optional<FusedLinears> fused = FusedLinears::fuse(layers);
    ASSERT_TRUE(fused.has_value());
    layers[0]->enable_lora(2, 4.0, 0.0);  // LoRA training on the separate names
    EXPECT_FALSE(fused->valid());
  }
  {
    std::vector<Linear> layers = frozen_linears({4, 4}, 6);
    std::optional<FusedLinears> fused = FusedLinears::fuse(layers);
    ASSERT_TRUE(fused.has_value());
    layers[1]->to(at::kDouble);
    EXPECT_FALSE(fused->valid());
  }
}

}  // namespace
}  // namespace m2sa::nn
