#include "m2sa/nn/checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/core/Generator.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <mutex>
#include <optional>

#include "m2sa/core/error.h"
#include "m2sa/nn/attention.h"

namespace m2sa::nn {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The generator states a recomputation must replay: the CPU generator always, plus the one of the input's
// device when that is not the CPU (what torch.utils.checkpoint's preserve_rng_state does).
struct RngSnapshot {
  at::Tensor cpu_state;
  std::optional<at::Device> device;
  at::Tensor device_state;

  static at::Generator generator(const at::Device& d) { return at::globalContext().defaultGenerator(d); }

  static RngSnapshot take(const at::Device& d) {
    RngSnapshot s;
    {
      at::Generator g = generator(at::Device(at::kCPU));
      std::lock_guard<std::mutex> lock(g.mutex());
      s.cpu_state = g.get_state();
    }
    if (!d.is_cpu() && !d.is_meta()) {
      at::Generator g = generator(d);
      std::lock_guard<std::mutex> lock(g.mutex());
      s.device = d;
      s.device_state = g.get_state();
    }
    return s;
  }

  void restore() const {
    {
      at::Generator g = generator(at::Device(at::kCPU));
      std::lock_guard<std::mutex> lock(g.mutex());
      g.set_state(cpu_state);
    }
    if (device) {
      at::Generator g = generator(*device);
      std::lock_guard<std::mutex> lock(g.mutex());
      g.set_state(device_state);
    }
  }
};

// What backward needs besides the saved input: the function, the parameters to differentiate and the RNG state
// of the first run. Kept in the context's saved_data as a capsule. The parameters are leaves, so holding them
// here makes no reference cycle.
struct Recompute : torch::CustomClassHolder {
  CheckpointFn fn;
  std::vector<at::Tensor> params;
  RngSnapshot rng;
  AttentionMode attention = AttentionMode::kSdpa;  // backward runs on autograd's threads, whose mode is the default
  bool input_requires_grad = false;
};

struct CheckpointFunction : public torch::autograd::Function<CheckpointFunction> {
  // `params` are listed as inputs only so that autograd routes their gradients (and so that the output
  // requires grad when they do); fn reads them itself.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, at::TensorList params,
                            c10::intrusive_ptr<Recompute> recompute) {
    // Grad mode is off here (Function::apply), so fn records nothing.
    recompute->input_requires_grad = input.requires_grad();
    recompute->rng = RngSnapshot::take(input.device());
    recompute->attention = attention_mode();
    at::Tensor out = recompute->fn(input);
    ctx->save_for_backward({input});
    ctx->saved_data["recompute"] = c10::IValue::make_capsule(recompute);
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto recompute = c10::static_intrusive_pointer_cast<Recompute>(ctx->saved_data["recompute"].toCapsule());
    const auto num_params = static_cast<int64_t>(recompute->params.size());
    at::Tensor input = ctx->get_saved_variables()[0].detach();
    input.set_requires_grad(recompute->input_requires_grad);

    // Replay the forward with the first run's RNG state, then put the current state back.
    at::Tensor output;
    {
      RngSnapshot now = RngSnapshot::take(input.device());
      recompute->rng.restore();
      at::AutoGradMode enable(true);
      AttentionModeGuard same_attention(recompute->attention);
      output = recompute->fn(input);
      now.restore();
    }
    // Gradient targets: the input (if it needs one) and the parameters, which the recomputed graph reaches
    // because fn reads the very same tensors.
    variable_list targets;
    if (recompute->input_requires_grad) targets.push_back(input);
    for (const at::Tensor& p : recompute->params) targets.push_back(p);
    variable_list result(1 + num_params + 1);  // input, params..., the recompute object (never a gradient)
    if (!targets.empty() && output.requires_grad() && grad_outputs[0].defined()) {
      variable_list grads = torch::autograd::grad({output}, targets, {grad_outputs[0]}, /*retain_graph=*/false,
                                                  /*create_graph=*/false, /*allow_unused=*/true);
      std::size_t k = 0;
      if (recompute->input_requires_grad) result[0] = grads[k++];
      for (int64_t i = 0; i < num_params; ++i) result[1 + i] = grads[k++];
    }
    return result;
  }
};

}  // namespace

at::Tensor checkpoint(const CheckpointFn& fn, const at::Tensor& input, const std::vector<at::Tensor>& params) {
  M2SA_CHECK(static_cast<bool>(fn), "checkpoint: no function given");
  std::vector<at::Tensor> with_grad;
  for (const auto& p : params)
    if (p.defined() && p.requires_grad()) with_grad.push_back(p);
  if (!at::GradMode::is_enabled() || (!input.requires_grad() && with_grad.empty())) return fn(input);
  auto recompute = c10::make_intrusive<Recompute>();
  recompute->fn = fn;
  recompute->params = with_grad;
  return CheckpointFunction::apply(input, at::TensorList(with_grad), recompute);
}

std::vector<at::Tensor> trainable_parameters(const torch::nn::Module& module) {
  std::vector<at::Tensor> out;
  for (const auto& p : module.parameters(/*recurse=*/true))
    if (p.requires_grad()) out.push_back(p);
  return out;
}

}  // namespace m2sa::nn
