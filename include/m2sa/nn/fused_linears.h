#pragma once
// Linear layers that read the same input, computed as one matmul: LLaMA's q/k/v and gate/up projections at
// inference (issue 15). fuse() concatenates their weights into one [sum(out), in] tensor and makes each layer's
// weight a view of its rows, so state keys, loading, export and memory stay those of the separate layers.
// The fused path is taken only while it is still exact: a LoRA adapter enabled since, or a weight replaced by a
// cast or device move, silently returns the layers to their own forward.
#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <vector>

#include "m2sa/nn/layers.h"

namespace m2sa::nn {

class FusedLinears {
 public:
  // Empty (with the reason in *why) when the layers cannot be fused: a bias, an unmerged LoRA adapter, a weight
  // that requires grad (training keeps the separate names), or different inputs, dtypes or devices.
  static std::optional<FusedLinears> fuse(const std::vector<Linear>& layers, std::string* why = nullptr);

  // True while every layer's weight is still its view of the fused weight and no adapter is active.
  bool valid() const;
  // Each layer's output, in order: one matmul, split along the last dimension (views).
  std::vector<at::Tensor> forward(const at::Tensor& x) const;
  const at::Tensor& weight() const { return weight_; }

 private:
  at::Tensor weight_;
  std::vector<Linear> layers_;
  std::vector<int64_t> sizes_;
};

}  // namespace m2sa::nn
