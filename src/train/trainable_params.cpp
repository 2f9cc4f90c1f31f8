#include "m2sa/train/trainable_params.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/nn/module.h>

#include <set>

#include "m2sa/core/dtype.h"
#include "m2sa/core/error.h"
#include "m2sa/io/tensor_info.h"

namespace m2sa::train {

TrainableParams::TrainableParams(std::vector<std::pair<std::string, at::Tensor>> params,
                                 TrainableParamsOptions options) {
  M2SA_CHECK(!params.empty(), "trainable parameters: the model has no trainable parameter");
  M2SA_CHECK(options.bucket_bytes > 0, "trainable parameters: bucket_bytes must be positive");
  std::set<std::string> seen;
  const c10::Device device = params.front().second.device();
  for (auto& [name, p] : params) {
    M2SA_CHECK(seen.insert(name).second, "trainable parameters: '", name, "' appears twice");
    M2SA_CHECK(p.defined() && p.is_leaf() && p.requires_grad(), "trainable parameter '", name,
               "' must be a leaf tensor that requires grad");
    M2SA_CHECK(at::isFloatingType(p.scalar_type()), "trainable parameter '", name, "' has non-float dtype ",
               p.scalar_type());
    M2SA_CHECK(!p.is_meta(), "trainable parameter '", name, "' is on the meta device (built shape-only)");
    M2SA_CHECK(p.device() == device, "trainable parameter '", name, "' is on ", p.device(), " but '",
               params.front().first, "' is on ", device, ": all trainable parameters must share one device");
    names_.push_back(name);
    params_.push_back(p);
    numel_ += p.numel();
  }
  at::NoGradGuard no_grad;
  for (const at::Tensor& p : params_) {
    if (p.scalar_type() == at::kFloat) {
      masters_.push_back(p.detach());  // same storage: the optimizer updates the model in place
    } else {
      masters_.push_back(p.detach().to(at::kFloat).clone());
      separate_masters_ = true;
    }
  }
  // Flat fp32 gradient buckets, filled in parameter order.
  const int64_t bucket_elems = std::max<int64_t>(1, options.bucket_bytes / 4);
  std::vector<std::pair<size_t, size_t>> ranges;  // [first, last) parameter index per bucket
  size_t first = 0;
  int64_t count = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    const int64_t n = params_[i].numel();
    if (count > 0 && count + n > bucket_elems) {
      ranges.emplace_back(first, i);
      first = i;
      count = 0;
    }
    count += n;
  }
  ranges.emplace_back(first, params_.size());
  grads_.resize(params_.size());
  const auto opts = at::TensorOptions().dtype(at::kFloat).device(device);
  for (auto [a, b] : ranges) {
    int64_t total = 0;
    for (size_t i = a; i < b; ++i) total += params_[i].numel();
    at::Tensor bucket = at::zeros({total}, opts);
    int64_t offset = 0;
    for (size_t i = a; i < b; ++i) {
      const int64_t n = params_[i].numel();
      grads_[i] = bucket.narrow(0, offset, n).view(params_[i].sizes());
      offset += n;
    }
    buckets_.push_back(bucket);
  }
}

TrainableParams TrainableParams::from_module(const torch::nn::Module& module, TrainableParamsOptions options) {
  std::vector<std::pair<std::string, at::Tensor>> params;
  for (const auto& item : module.named_parameters(/*recurse=*/true))
    if (item.value().requires_grad()) params.emplace_back(item.key(), item.value());
  return TrainableParams(std::move(params), options);
}

void TrainableParams::accumulate_grads() {
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor& g = params_[i].mutable_grad();
    if (!g.defined()) continue;
    grads_[i].add_(g);
    g.reset();
  }
}

void TrainableParams::zero_grads() {
  for (at::Tensor& b : buckets_) b.zero_();
  for (const at::Tensor& p : params_) p.mutable_grad().reset();
}

void TrainableParams::scale_grads(double factor) {
  if (factor == 1.0) return;
  for (at::Tensor& b : buckets_) b.mul_(factor);
}

namespace {
// The total L2 norm exactly as torch::nn::utils::clip_grad_norm_ computes it (per-tensor norms, then the norm
// of their stack; a single tensor's norm as is).
at::Tensor total_norm_tensor(const std::vector<at::Tensor>& grads) {
  std::vector<at::Tensor> norms;
  norms.reserve(grads.size());
  for (const at::Tensor& g : grads) norms.push_back(g.norm(2));
  return norms.size() == 1 ? norms[0] : at::stack(norms).norm(2);
}
}  // namespace

double TrainableParams::grad_norm() const {
  at::NoGradGuard no_grad;
  return total_norm_tensor(grads_).item<double>();
}

double TrainableParams::clip_grad_norm(double max_norm) {
  at::NoGradGuard no_grad;
  at::Tensor total = total_norm_tensor(grads_);
  if (max_norm > 0) {
    at::Tensor coef = max_norm / (total + 1e-6);
    at::Tensor clamped = at::clamp(coef, c10::nullopt, 1.0);
    for (at::Tensor& g : grads_) g.mul_(clamped);
  }
  return total.item<double>();
}

void TrainableParams::copy_masters_to_params() {
  if (!separate_masters_) return;
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i)
    if (params_[i].scalar_type() != at::kFloat) params_[i].copy_(masters_[i]);
}

NamedTensors TrainableParams::named_masters() const {
  NamedTensors out;
  for (size_t i = 0; i < names_.size(); ++i) out.emplace_back(names_[i], masters_[i]);
  return out;
}

void TrainableParams::check_layout(const SafetensorsReader& reader) const {
  std::vector<std::string> problems;
  std::set<std::string> ours;
  for (size_t i = 0; i < names_.size(); ++i) {
    ours.insert(names_[i]);
    const std::vector<int64_t> shape = params_[i].sizes().vec();
    if (!reader.contains(names_[i])) {
      problems.push_back("missing '" + names_[i] + "' " + shape_string(shape));
      continue;
    }
    const TensorInfo& info = reader.info(names_[i]);
    if (info.shape != shape)
      problems.push_back("'" + names_[i] + "' is " + shape_string(info.shape) + " in the checkpoint but " +
                         shape_string(shape) + " in the model");
    else if (!at::isFloatingType(info.dtype))
      problems.push_back("'" + names_[i] + "' has non-float dtype " + safetensors_dtype_name(info.dtype));
  }
  for (const TensorInfo& info : reader.tensors())
    if (!ours.count(info.name))
      problems.push_back("unexpected '" + info.name + "' " + shape_string(info.shape) +
                         " (not a trainable parameter of this model)");
  if (!problems.empty()) {
    std::string msg;
    for (size_t i = 0; i < problems.size() && i < 30; ++i) msg += "\n  " + problems[i];
    if (problems.size() > 30) msg += "\n  ... and " + std::to_string(problems.size() - 30) + " more";
    fail(reader.path().string(), ": the checkpoint's trainable parameters differ from the model's (",
         problems.size(), " differences):", msg);
  }
}

void TrainableParams::load_masters(const SafetensorsReader& reader) {
  check_layout(reader);
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < names_.size(); ++i) masters_[i].copy_(reader.load(names_[i]));
  copy_masters_to_params();
}

}  // namespace m2sa::train
