#pragma once
// The basic layers every model is made of. They register parameters under PyTorch's names (`weight`,
// `bias`), create them through nn/init.h (so shape-only construction works) and use PyTorch's default
// initialisation, which matters for the tiny model trained from scratch.
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>

namespace m2sa::nn {

// y = x W^T + b. weight [out, in], bias [out].
class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, bool bias = true);
  at::Tensor forward(const at::Tensor& x) const;
  int64_t in_features, out_features;
  at::Tensor weight, bias;
};
TORCH_MODULE(Linear);

// 2-D convolution, weight [out, in, k, k].
class Conv2dImpl : public torch::nn::Module {
 public:
  Conv2dImpl(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride = 1, int64_t padding = 0,
             bool bias = true);
  at::Tensor forward(const at::Tensor& x) const;
  int64_t stride, padding;
  at::Tensor weight, bias;
};
TORCH_MODULE(Conv2d);

// Transposed 2-D convolution, weight [in, out, k, k] (PyTorch's layout).
class ConvTranspose2dImpl : public torch::nn::Module {
 public:
  ConvTranspose2dImpl(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride = 1, bool bias = true);
  at::Tensor forward(const at::Tensor& x) const;
  int64_t stride;
  at::Tensor weight, bias;
};
TORCH_MODULE(ConvTranspose2d);

// LayerNorm over the last dimension.
class LayerNormImpl : public torch::nn::Module {
 public:
  LayerNormImpl(int64_t dim, double eps = 1e-5);
  at::Tensor forward(const at::Tensor& x) const;
  double eps;
  at::Tensor weight, bias;
};
TORCH_MODULE(LayerNorm);

// SAM's LayerNorm2d: normalises NCHW over C (eps 1e-6).
class LayerNorm2dImpl : public torch::nn::Module {
 public:
  explicit LayerNorm2dImpl(int64_t channels, double eps = 1e-6);
  at::Tensor forward(const at::Tensor& x) const;  // [B, C, H, W]
  double eps;
  at::Tensor weight, bias;
};
TORCH_MODULE(LayerNorm2d);

// LLaMA's RMSNorm, computed in fp32 and cast back as HF does: w * (x * rsqrt(mean(x^2) + eps)).to(dtype).
class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps);
  at::Tensor forward(const at::Tensor& x) const;
  double eps;
  at::Tensor weight;
};
TORCH_MODULE(RMSNorm);

// Lookup table, weight [num, dim], N(0, 1) init like nn.Embedding.
class EmbeddingImpl : public torch::nn::Module {
 public:
  EmbeddingImpl(int64_t num_embeddings, int64_t embedding_dim);
  at::Tensor forward(const at::Tensor& ids) const;  // ids must be in [0, num_embeddings)
  int64_t num_embeddings, embedding_dim;
  at::Tensor weight;
};
TORCH_MODULE(Embedding);

}  // namespace m2sa::nn
