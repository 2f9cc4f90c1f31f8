#pragma once
// Small building blocks shared by the SAM components (segment_anything/modeling/common.py and the MLP of
// mask_decoder.py), registered under the reference names.
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "m2sa/nn/layers.h"

namespace m2sa::sam {

enum class Activation { kGelu, kRelu };  // GELU is the exact (erf) one, as nn.GELU()
at::Tensor activate(const at::Tensor& x, Activation act);

// An empty module that only names its children, like nn.Sequential / nn.ModuleList do in a state_dict
// (`neck.0.weight`, `blocks.3.attn.qkv.weight`). Returns the container, registered in `parent` as `name`.
std::shared_ptr<torch::nn::Module> register_container(torch::nn::Module& parent, const std::string& name);

// common.py::MLPBlock: lin2(act(lin1(x))). Keys lin1.*, lin2.*.
class MLPBlockImpl : public torch::nn::Module {
 public:
  MLPBlockImpl(int64_t embedding_dim, int64_t mlp_dim, Activation act);
  at::Tensor forward(const at::Tensor& x) const;  // [..., embedding_dim] -> [..., embedding_dim]
  nn::Linear lin1{nullptr}, lin2{nullptr};
  Activation act;
};
TORCH_MODULE(MLPBlock);

// mask_decoder.py::MLP: num_layers Linear layers (keys layers.{i}.*), ReLU between them, none after the last.
class MLPImpl : public torch::nn::Module {
 public:
  MLPImpl(int64_t input_dim, int64_t hidden_dim, int64_t output_dim, int64_t num_layers);
  at::Tensor forward(const at::Tensor& x) const;  // [..., input_dim] -> [..., output_dim]
  std::vector<nn::Linear> layers;
};
TORCH_MODULE(MLP);

}  // namespace m2sa::sam
