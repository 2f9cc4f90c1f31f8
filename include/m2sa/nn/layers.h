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
//
// Any Linear can host one LoRA adapter as PEFT 0.4's `lora.Linear` does (adapter name "default"):
// `enable_lora(r, alpha, dropout)` registers `lora_A.default.weight` [r, in] (kaiming-uniform a=sqrt(5), as
// nn.Linear) and `lora_B.default.weight` [out, r] (zeros), so the state keys are PEFT's, and the forward becomes
// y = x W^T + b + dropout(x) A^T B^T * (alpha / r). The adapter is created in fp32 on the base weight's device
// (PEFT's default; the input is cast to the adapter's dtype and the update back to the output's). Rules for
// which layers get one: nn/lora.h.
class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, bool bias = true);
  at::Tensor forward(const at::Tensor& x) const;

  // Errors if an adapter exists already, r < 1, or dropout is outside [0, 1).
  void enable_lora(int64_t r, double alpha, double dropout);
  bool has_lora() const { return lora_r > 0; }
  bool lora_merged() const { return lora_merged_; }
  // W += (alpha / r) B A (in W's dtype); forward then skips the adapter. Errors without an adapter or when
  // already merged. unmerge_lora subtracts it again.
  void merge_lora();
  void unmerge_lora();
  // (alpha / r) B A, [out, in], in the adapter's dtype.
  at::Tensor lora_delta() const;

  int64_t in_features, out_features;
  at::Tensor weight, bias;
  int64_t lora_r = 0;
  double lora_alpha = 0.0, lora_dropout = 0.0, lora_scaling = 0.0;
  at::Tensor lora_A, lora_B;  // the adapter's parameters (undefined without one)

 private:
  bool lora_merged_ = false;
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
  at::Tensor forward(const at::Tensor& ids) const;  // ids must be in [0, num_embeddings) (checked: reads them back)
  at::Tensor lookup(const at::Tensor& ids) const;   // the same without the check, for ids the caller vouches for
  int64_t num_embeddings, embedding_dim;
  at::Tensor weight;
};
TORCH_MODULE(Embedding);

}  // namespace m2sa::nn
