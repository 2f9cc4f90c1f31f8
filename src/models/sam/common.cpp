#include "m2sa/models/sam/common.h"

#include <ATen/ATen.h>

namespace m2sa::sam {

at::Tensor activate(const at::Tensor& x, Activation act) {
  return act == Activation::kGelu ? at::gelu(x) : at::relu(x);
}

std::shared_ptr<torch::nn::Module> register_container(torch::nn::Module& parent, const std::string& name) {
  return parent.register_module(name, std::make_shared<torch::nn::Module>());
}

MLPBlockImpl::MLPBlockImpl(int64_t embedding_dim, int64_t mlp_dim, Activation a) : act(a) {
  lin1 = register_module("lin1", nn::Linear(embedding_dim, mlp_dim));
  lin2 = register_module("lin2", nn::Linear(mlp_dim, embedding_dim));
}

at::Tensor MLPBlockImpl::forward(const at::Tensor& x) const { return lin2->forward(activate(lin1->forward(x), act)); }

MLPImpl::MLPImpl(int64_t input_dim, int64_t hidden_dim, int64_t output_dim, int64_t num_layers) {
  auto container = register_container(*this, "layers");
  for (int64_t i = 0; i < num_layers; ++i) {
    const int64_t in = i == 0 ? input_dim : hidden_dim;
    const int64_t out = i == num_layers - 1 ? output_dim : hidden_dim;
    layers.push_back(container->register_module(std::to_string(i), nn::Linear(in, out)));
  }
}

at::Tensor MLPImpl::forward(const at::Tensor& x) const {
  at::Tensor h = x;
  for (size_t i = 0; i < layers.size(); ++i) {
    h = layers[i]->forward(h);
    if (i + 1 < layers.size()) h = at::relu(h);
  }
  return h;
}

}  // namespace m2sa::sam
