#pragma once
// The trainable parameters of a model as the trainer sees them: names (the module's state_dict names), the
// model's own tensors, fp32 master copies and fp32 gradient accumulators living in flat buckets.
//
// - Masters (Decisions table: "bf16 frozen weights and activations on CUDA, fp32 master copies of trainable
//   weights"): for an fp32 parameter the master *is* the parameter (updated in place); for a bf16/fp16 parameter
//   it is a separate fp32 tensor, and copy_masters_to_params() rounds it back into the model after each step.
// - Gradients: after each micro-batch's backward, accumulate_grads() adds every parameter's .grad (any dtype)
//   into its fp32 accumulator and releases the .grad, so accumulation over micro-batches happens in fp32
//   whatever the model dtype. The accumulators are views into a few flat buckets, which is what the data-parallel
//   all-reduce sends (fp32 always: Gloo in LibTorch 1.13 aborts the process on bf16, TOOLCHAIN.md section 5).
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "m2sa/io/safetensors.h"

namespace torch::nn {
class Module;
}

namespace m2sa::train {

struct TrainableParamsOptions {
  int64_t bucket_bytes = int64_t{64} << 20;  // flat gradient bucket size (a larger parameter gets its own)
};

class TrainableParams {
 public:
  // `params`: (name, tensor) pairs; every tensor must be a leaf that requires grad, all on one device.
  explicit TrainableParams(std::vector<std::pair<std::string, at::Tensor>> params,
                           TrainableParamsOptions options = {});
  // Every parameter of `module` with requires_grad, in named_parameters() order.
  static TrainableParams from_module(const torch::nn::Module& module, TrainableParamsOptions options = {});

  size_t size() const { return names_.size(); }
  int64_t numel() const { return numel_; }
  const std::vector<std::string>& names() const { return names_; }
  const std::vector<at::Tensor>& params() const { return params_; }    // the model's tensors
  const std::vector<at::Tensor>& masters() const { return masters_; }  // fp32
  const std::vector<at::Tensor>& grads() const { return grads_; }      // fp32 views into the buckets
  std::vector<at::Tensor>& grad_buckets() { return buckets_; }         // flat fp32 [n]
  bool has_separate_masters() const { return separate_masters_; }

  // grads += param.grad (in fp32) for every parameter that has one, then releases param.grad.
  void accumulate_grads();
  void zero_grads();
  void scale_grads(double factor);
  // torch::nn::utils::clip_grad_norm_ over the accumulated gradients (L2 over all of them; scale by
  // max_norm / (norm + 1e-6) when that is below 1). Returns the norm before clipping. max_norm <= 0: norm only.
  double clip_grad_norm(double max_norm);
  double grad_norm() const;

  // Rounds the masters into the model's tensors (no-op when they are the same tensors).
  void copy_masters_to_params();

  NamedTensors named_masters() const;
  // Refuses a file whose tensor names/shapes differ from ours (naming every difference), then loads the
  // masters (and the model tensors).
  void load_masters(const SafetensorsReader& reader);
  void check_layout(const SafetensorsReader& reader) const;

 private:
  std::vector<std::string> names_;
  std::vector<at::Tensor> params_, masters_, grads_, buckets_;
  int64_t numel_ = 0;
  bool separate_masters_ = false;
};

}  // namespace m2sa::train
