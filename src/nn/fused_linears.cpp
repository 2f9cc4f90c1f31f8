#include "m2sa/nn/fused_linears.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "m2sa/core/error.h"

namespace m2sa::nn {

std::optional<FusedLinears> FusedLinears::fuse(const std::vector<Linear>& layers, std::string* why) {
  auto refuse = [&](const std::string& reason) -> std::optional<FusedLinears> {
    if (why != nullptr) *why = reason;
    return std::nullopt;
  };
  if (layers.size() < 2) return refuse("fewer than two layers");
  const at::Tensor& first = layers.front()->weight;
  std::vector<at::Tensor> weights;
  for (const Linear& l : layers) {
    if (l->bias.defined()) return refuse("a layer has a bias");
    if (l->has_lora() && !l->lora_merged()) return refuse("a layer has an unmerged LoRA adapter");
    if (l->weight.requires_grad()) return refuse("a weight requires grad");
    if (l->in_features != layers.front()->in_features || l->weight.scalar_type() != first.scalar_type() ||
        l->weight.device() != first.device())
      return refuse("the layers differ in input size, dtype or device");
    weights.push_back(l->weight);
  }
  FusedLinears f;
  at::NoGradGuard no_grad;
  f.weight_ = at::cat(weights, 0);
  int64_t row = 0;
  for (const Linear& l : layers) {
    const int64_t n = l->weight.size(0);
    l->weight.set_data(f.weight_.narrow(0, row, n));
    f.sizes_.push_back(n);
    row += n;
  }
  f.layers_ = layers;
  return f;
}

bool FusedLinears::valid() const {
  int64_t row = 0;
  const auto row_bytes = static_cast<int64_t>(weight_.size(1) * weight_.element_size());
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const Linear& l = layers_[i];
    if ((l->has_lora() && !l->lora_merged()) || !l->weight.is_alias_of(weight_) ||
        l->weight.scalar_type() != weight_.scalar_type() ||
        static_cast<const char*>(l->weight.data_ptr()) != static_cast<const char*>(weight_.data_ptr()) + row * row_bytes)
      return false;
    row += sizes_[i];
  }
  return true;
}

std::vector<at::Tensor> FusedLinears::forward(const at::Tensor& x) const {
  M2SA_CHECK(x.dim() >= 1 && x.size(-1) == weight_.size(1), "fused Linear: input ", x.sizes(), " has ",
             x.dim() >= 1 ? x.size(-1) : 0, " features, expected ", weight_.size(1));
  return at::linear(x, weight_).split_with_sizes(sizes_, -1);
}

}  // namespace m2sa::nn
