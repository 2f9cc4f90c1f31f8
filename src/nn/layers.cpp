#include "m2sa/nn/layers.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <optional>

#include "m2sa/core/error.h"
#include "m2sa/nn/init.h"

namespace m2sa::nn {

LinearImpl::LinearImpl(int64_t in, int64_t out, bool has_bias) : in_features(in), out_features(out) {
  weight = new_tensor({out, in});
  default_weight_init_(weight, in);
  weight = register_parameter("weight", weight);
  if (has_bias) {
    bias = new_tensor({out});
    default_weight_init_(bias, in);
    bias = register_parameter("bias", bias);
  }
}

at::Tensor LinearImpl::forward(const at::Tensor& x) const {
  M2SA_CHECK(x.dim() >= 1 && x.size(-1) == in_features, "Linear: input ", x.sizes(), " has ",
             x.dim() >= 1 ? x.size(-1) : 0, " features, expected ", in_features);
  at::Tensor y = at::linear(x, weight, bias);
  if (lora_r > 0 && !lora_merged_) {
    // PEFT 0.4 lora.Linear.forward: result += lora_B(lora_A(dropout(x.to(A.dtype)))) * scaling.
    at::Tensor h = x.to(lora_A.scalar_type());
    if (lora_dropout > 0.0 && is_training()) h = at::dropout(h, lora_dropout, /*train=*/true);
    at::Tensor update = at::linear(at::linear(h, lora_A), lora_B) * lora_scaling;
    y = y + update.to(y.scalar_type());
  }
  return y;
}

void LinearImpl::enable_lora(int64_t r, double alpha, double dropout) {
  M2SA_CHECK(lora_r == 0, "Linear(", in_features, " -> ", out_features, "): a LoRA adapter is already enabled");
  M2SA_CHECK(r >= 1, "LoRA rank r must be >= 1, got ", r);
  M2SA_CHECK(std::isfinite(alpha) && alpha > 0.0, "LoRA alpha must be a positive number, got ", alpha);
  M2SA_CHECK(dropout >= 0.0 && dropout < 1.0, "LoRA dropout must be in [0, 1), got ", dropout);
  // The adapter follows the base weight onto its device (meta for shape-only models).
  std::optional<ShapeOnlyScope> meta;
  if (weight.is_meta()) meta.emplace();
  // PEFT: lora_A = ModuleDict({"default": Linear(in, r, bias=False)}) with kaiming_uniform_(a=sqrt(5)), which is
  // nn.Linear's default init; lora_B the same shape-wise, initialised to zeros.
  auto a_slot = register_module("lora_A", std::make_shared<torch::nn::Module>("ModuleDict"));
  auto b_slot = register_module("lora_B", std::make_shared<torch::nn::Module>("ModuleDict"));
  auto a = a_slot->register_module("default", Linear(in_features, r, /*bias=*/false));
  auto b = b_slot->register_module("default", Linear(r, out_features, /*bias=*/false));
  fill_(b->weight, 0.0);
  if (!weight.is_meta() && weight.device() != a->weight.device()) {
    a->to(weight.device());
    b->to(weight.device());
  }
  lora_A = a->weight;
  lora_B = b->weight;
  lora_r = r;
  lora_alpha = alpha;
  lora_dropout = dropout;
  lora_scaling = alpha / static_cast<double>(r);
  lora_merged_ = false;
}

at::Tensor LinearImpl::lora_delta() const {
  M2SA_CHECK(lora_r > 0, "Linear(", in_features, " -> ", out_features, "): no LoRA adapter");
  return at::matmul(lora_B, lora_A) * lora_scaling;
}

void LinearImpl::merge_lora() {
  M2SA_CHECK(lora_r > 0, "merge_lora: Linear(", in_features, " -> ", out_features, ") has no LoRA adapter");
  M2SA_CHECK(!lora_merged_, "merge_lora: the LoRA adapter is already merged");
  at::NoGradGuard no_grad;
  weight.add_(lora_delta().to(weight.scalar_type()));
  lora_merged_ = true;
}

void LinearImpl::unmerge_lora() {
  M2SA_CHECK(lora_r > 0, "unmerge_lora: Linear(", in_features, " -> ", out_features, ") has no LoRA adapter");
  M2SA_CHECK(lora_merged_, "unmerge_lora: the LoRA adapter is not merged");
  at::NoGradGuard no_grad;
  weight.sub_(lora_delta().to(weight.scalar_type()));
  lora_merged_ = false;
}

Conv2dImpl::Conv2dImpl(int64_t in, int64_t out, int64_t k, int64_t s, int64_t p, bool has_bias)
    : stride(s), padding(p) {
  weight = new_tensor({out, in, k, k});
  default_weight_init_(weight, in * k * k);
  weight = register_parameter("weight", weight);
  if (has_bias) {
    bias = new_tensor({out});
    default_weight_init_(bias, in * k * k);
    bias = register_parameter("bias", bias);
  }
}

at::Tensor Conv2dImpl::forward(const at::Tensor& x) const {
  return at::conv2d(x, weight, bias, {stride, stride}, {padding, padding});
}

ConvTranspose2dImpl::ConvTranspose2dImpl(int64_t in, int64_t out, int64_t k, int64_t s, bool has_bias) : stride(s) {
  weight = new_tensor({in, out, k, k});
  // PyTorch computes fan_in from weight.size(1) for transposed convs.
  default_weight_init_(weight, out * k * k);
  weight = register_parameter("weight", weight);
  if (has_bias) {
    bias = new_tensor({out});
    default_weight_init_(bias, out * k * k);
    bias = register_parameter("bias", bias);
  }
}

at::Tensor ConvTranspose2dImpl::forward(const at::Tensor& x) const {
  return at::conv_transpose2d(x, weight, bias, {stride, stride});
}

LayerNormImpl::LayerNormImpl(int64_t dim, double e) : eps(e) {
  weight = new_tensor({dim});
  fill_(weight, 1.0);
  weight = register_parameter("weight", weight);
  bias = new_tensor({dim});
  fill_(bias, 0.0);
  bias = register_parameter("bias", bias);
}

at::Tensor LayerNormImpl::forward(const at::Tensor& x) const {
  return at::layer_norm(x, {weight.size(0)}, weight, bias, eps);
}

LayerNorm2dImpl::LayerNorm2dImpl(int64_t channels, double e) : eps(e) {
  weight = new_tensor({channels});
  fill_(weight, 1.0);
  weight = register_parameter("weight", weight);
  bias = new_tensor({channels});
  fill_(bias, 0.0);
  bias = register_parameter("bias", bias);
}

at::Tensor LayerNorm2dImpl::forward(const at::Tensor& x) const {
  // Same arithmetic as segment_anything/modeling/common.py::LayerNorm2d.
  at::Tensor u = x.mean(1, /*keepdim=*/true);
  at::Tensor d = x - u;
  at::Tensor s = d.pow(2).mean(1, true);
  at::Tensor y = d / at::sqrt(s + eps);
  return weight.view({1, -1, 1, 1}) * y + bias.view({1, -1, 1, 1});
}

RMSNormImpl::RMSNormImpl(int64_t dim, double e) : eps(e) {
  weight = new_tensor({dim});
  fill_(weight, 1.0);
  weight = register_parameter("weight", weight);
}

at::Tensor RMSNormImpl::forward(const at::Tensor& x) const {
  at::Tensor h = x.to(at::kFloat);
  at::Tensor var = h.pow(2).mean(-1, /*keepdim=*/true);
  h = h * at::rsqrt(var + eps);
  return weight * h.to(x.scalar_type());
}

EmbeddingImpl::EmbeddingImpl(int64_t num, int64_t dim) : num_embeddings(num), embedding_dim(dim) {
  weight = new_tensor({num, dim});
  normal_(weight, 0.0, 1.0);
  weight = register_parameter("weight", weight);
}

at::Tensor EmbeddingImpl::forward(const at::Tensor& ids) const {
  if (ids.numel() > 0) {
    const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
    M2SA_CHECK(lo >= 0 && hi < num_embeddings, "Embedding: token id ", lo < 0 ? lo : hi, " is outside [0, ",
               num_embeddings, ")");
  }
  return lookup(ids);
}

at::Tensor EmbeddingImpl::lookup(const at::Tensor& ids) const { return at::embedding(weight, ids); }

}  // namespace m2sa::nn
