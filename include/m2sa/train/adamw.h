#pragma once
// AdamW with decoupled weight decay and bias correction, operation for operation as torch.optim.AdamW /
// torch::optim::AdamW (single-tensor path, amsgrad off):
//   p   *= 1 - lr * wd
//   m    = m * beta1 + (1 - beta1) * g
//   v    = v * beta2 + (1 - beta2) * g * g
//   p   -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// DeepSpeed's FusedAdam (adam_w_mode) computes the same update (MMR:train_ds.py:300-307: lr, betas (0.9, 0.95),
// weight_decay 0) with a different rounding order. Our own class (not torch::optim) so that the state is plain
// tensors (safetensors checkpoints) and the parameters it updates are the fp32 master copies of the trainable
// weights (see trainable_params.h). Every parameter steps every time (a parameter that got no gradient has a zero
// gradient), as DeepSpeed's flat ZeRO partitions do.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "m2sa/core/json_reader.h"
#include "m2sa/io/safetensors.h"

namespace m2sa::train {

struct AdamWConfig {
  double lr = 3e-4;  // the peak lr; the schedule scales it (lr_schedule.h)
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.0;
  // When true, parameters with at most one dimension (biases, norm weights) get weight decay 0.
  bool no_decay_1d = false;

  static AdamWConfig from_json(const JsonReader& r);  // fields as above, all optional; strict
  json to_json() const;
};

struct ParamGroup {
  std::string name;
  std::vector<size_t> indices;  // into the optimizer's parameter list
  double weight_decay = 0.0;
  double lr_scale = 1.0;        // this group's lr = lr_scale * the step's lr
};

class AdamW {
 public:
  // `params` are updated in place (fp32, typically TrainableParams::masters()); names key the saved state.
  // Empty `groups`: one group "default" with config.weight_decay, or two ("decay", "no_decay") when
  // config.no_decay_1d is set.
  AdamW(std::vector<std::string> names, std::vector<at::Tensor> params, AdamWConfig config,
        std::vector<ParamGroup> groups = {});

  // One update with the step's learning rate; grads[i] matches params[i] (same shape, fp32).
  void step(double lr, const std::vector<at::Tensor>& grads);

  int64_t steps() const { return steps_; }
  const AdamWConfig& config() const { return config_; }
  const std::vector<ParamGroup>& groups() const { return groups_; }
  const std::vector<at::Tensor>& exp_avg() const { return exp_avg_; }
  const std::vector<at::Tensor>& exp_avg_sq() const { return exp_avg_sq_; }
  // exp_avg then exp_avg_sq, as handles sharing the optimizer's storage (to broadcast them in place).
  std::vector<at::Tensor> state_list() const;

  // State as named tensors "exp_avg/<name>", "exp_avg_sq/<name>" plus metadata (step count, hyper-parameters).
  NamedTensors state_tensors() const;
  std::map<std::string, std::string> state_metadata() const;
  // Restores from a file written with state_tensors()/state_metadata(). Refuses missing, unexpected or
  // differently shaped entries, naming them.
  void load_state(const SafetensorsReader& reader);
  void set_steps(int64_t steps) { steps_ = steps; }

 private:
  std::vector<std::string> names_;
  std::vector<at::Tensor> params_;
  AdamWConfig config_;
  std::vector<ParamGroup> groups_;
  std::vector<at::Tensor> exp_avg_, exp_avg_sq_;
  int64_t steps_ = 0;
};

}  // namespace m2sa::train
