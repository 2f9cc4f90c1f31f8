#include "m2sa/nn/layers.h"

#include <ATen/ATen.h>
#include <torch/csrc/api/include/torch/version.h>

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
  M2SA_CHECK(x.size(-1) == in_features, "Linear: input has ", x.size(-1), " features, expected ", in_features);
  return at::linear(x, weight, bias);
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
#if TORCH_VERSION_MAJOR < 2
  // LibTorch 1.13's oneDNN bf16 conv_transpose2d on the CPU checks shapes as a forward conv and throws ("weight of
  // size [256, 64, 2, 2], expected input[1, 256, 16, 16] to have 64 channels"): compute in fp32 and round once.
  if (x.is_cpu() && x.scalar_type() == at::kBFloat16) {
    return at::conv_transpose2d(x.to(at::kFloat), weight.to(at::kFloat), bias.defined() ? bias.to(at::kFloat) : bias,
                                {stride, stride})
        .to(at::kBFloat16);
  }
#endif
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
  return at::embedding(weight, ids);
}

}  // namespace m2sa::nn
