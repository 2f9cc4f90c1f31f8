#pragma once
// Activation (gradient) checkpointing for LibTorch C++, which has no torch.utils.checkpoint
// (../shared/spec/TOOLCHAIN.md section 3). `checkpoint(fn, input, params)` runs fn(input) without recording the
// graph, keeps only `input`, and in backward re-runs fn with the RNG state of the first run (so dropout draws
// the same mask) to compute the gradients of `input` and of `params`.
//
// Unlike PyTorch's re-entrant checkpoint, the trainable parameters are explicit inputs of the autograd node, so
// the output requires grad (and the parameters get gradients) even when `input` does not require grad, e.g.
// LoRA training with frozen embeddings.
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <functional>
#include <vector>

namespace m2sa::nn {

using CheckpointFn = std::function<at::Tensor(const at::Tensor&)>;

// `params` must hold every tensor that fn reads and that needs a gradient (typically
// trainable_parameters(layer)); tensors fn reads that are not listed are treated as constants. Without grad
// mode, or when neither input nor params require grad, this is just fn(input).
at::Tensor checkpoint(const CheckpointFn& fn, const at::Tensor& input, const std::vector<at::Tensor>& params);

// The parameters of `module` (recursively) with requires_grad set.
std::vector<at::Tensor> trainable_parameters(const torch::nn::Module& module);

}  // namespace m2sa::nn
