#include "m2sa/train/adamw.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <set>

#include "m2sa/core/dtype.h"
#include "m2sa/core/error.h"
#include "m2sa/io/tensor_info.h"

namespace m2sa::train {

AdamWConfig AdamWConfig::from_json(const JsonReader& r) {
  AdamWConfig c;
  c.lr = r.get_or("lr", c.lr);
  c.beta1 = r.get_or("beta1", c.beta1);
  c.beta2 = r.get_or("beta2", c.beta2);
  c.eps = r.get_or("eps", c.eps);
  c.weight_decay = r.get_or("weight_decay", c.weight_decay);
  c.no_decay_1d = r.get_or("no_decay_1d", c.no_decay_1d);
  r.finish();
  return c;
}

json AdamWConfig::to_json() const {
  return json{{"lr", lr},     {"beta1", beta1},
              {"beta2", beta2}, {"eps", eps},
              {"weight_decay", weight_decay}, {"no_decay_1d", no_decay_1d}};
}

AdamW::AdamW(std::vector<std::string> names, std::vector<at::Tensor> params, AdamWConfig config,
             std::vector<ParamGroup> groups)
    : names_(std::move(names)), params_(std::move(params)), config_(config), groups_(std::move(groups)) {
  M2SA_CHECK(names_.size() == params_.size(), "AdamW: ", names_.size(), " names for ", params_.size(),
             " parameters");
  M2SA_CHECK(config_.lr >= 0, "AdamW: lr must be >= 0, got ", config_.lr);
  M2SA_CHECK(config_.beta1 >= 0 && config_.beta1 < 1, "AdamW: beta1 must be in [0, 1), got ", config_.beta1);
  M2SA_CHECK(config_.beta2 >= 0 && config_.beta2 < 1, "AdamW: beta2 must be in [0, 1), got ", config_.beta2);
  M2SA_CHECK(config_.eps >= 0, "AdamW: eps must be >= 0, got ", config_.eps);
  M2SA_CHECK(config_.weight_decay >= 0, "AdamW: weight_decay must be >= 0, got ", config_.weight_decay);
  std::set<std::string> seen;
  for (size_t i = 0; i < params_.size(); ++i) {
    M2SA_CHECK(seen.insert(names_[i]).second, "AdamW: parameter name '", names_[i], "' appears twice");
    M2SA_CHECK(params_[i].defined() && params_[i].scalar_type() == at::kFloat, "AdamW: parameter '", names_[i],
               "' must be an fp32 tensor (the master copy), got ",
               params_[i].defined() ? c10::toString(params_[i].scalar_type()) : "undefined");
    exp_avg_.push_back(at::zeros_like(params_[i], at::MemoryFormat::Preserve));
    exp_avg_sq_.push_back(at::zeros_like(params_[i], at::MemoryFormat::Preserve));
  }
  if (groups_.empty()) {
    if (config_.no_decay_1d && config_.weight_decay != 0) {
      ParamGroup decay{"decay", {}, config_.weight_decay, 1.0};
      ParamGroup no_decay{"no_decay", {}, 0.0, 1.0};
      for (size_t i = 0; i < params_.size(); ++i) (params_[i].dim() <= 1 ? no_decay : decay).indices.push_back(i);
      groups_ = {decay, no_decay};
    } else {
      ParamGroup all{"default", {}, config_.weight_decay, 1.0};
      for (size_t i = 0; i < params_.size(); ++i) all.indices.push_back(i);
      groups_ = {all};
    }
  }
  std::vector<int> owner(params_.size(), -1);
  for (size_t g = 0; g < groups_.size(); ++g) {
    for (size_t i : groups_[g].indices) {
      M2SA_CHECK(i < params_.size(), "AdamW: group '", groups_[g].name, "' names parameter index ", i, " of ",
                 params_.size());
      M2SA_CHECK(owner[i] < 0, "AdamW: parameter '", names_[i], "' is in two groups ('",
                 groups_[owner[i]].name, "' and '", groups_[g].name, "')");
      owner[i] = static_cast<int>(g);
    }
  }
  for (size_t i = 0; i < params_.size(); ++i)
    M2SA_CHECK(owner[i] >= 0, "AdamW: parameter '", names_[i], "' is in no parameter group");
}

void AdamW::step(double lr, const std::vector<at::Tensor>& grads) {
  M2SA_CHECK(grads.size() == params_.size(), "AdamW::step: ", grads.size(), " gradients for ", params_.size(),
             " parameters");
  at::NoGradGuard no_grad;
  ++steps_;
  const double beta1 = config_.beta1, beta2 = config_.beta2;
  // Same scalar arithmetic as torch::optim::AdamW::step (torch/csrc/api/src/optim/adamw.cpp).
  const double bias_correction1 = 1 - std::pow(beta1, static_cast<double>(steps_));
  const double bias_correction2 = 1 - std::pow(beta2, static_cast<double>(steps_));
  for (const ParamGroup& group : groups_) {
    const double group_lr = lr * group.lr_scale;
    const double step_size = group_lr / bias_correction1;
    for (size_t i : group.indices) {
      at::Tensor& p = params_[i];
      const at::Tensor& g = grads[i];
      M2SA_CHECK(g.defined() && g.sizes() == p.sizes(), "AdamW::step: gradient of '", names_[i], "' has shape ",
                 g.defined() ? shape_string(g.sizes().vec()) : std::string("undefined"), ", expected ",
                 shape_string(p.sizes().vec()));
      if (group.weight_decay != 0) p.mul_(1 - group_lr * group.weight_decay);
      exp_avg_[i].mul_(beta1).add_(g, 1 - beta1);
      exp_avg_sq_[i].mul_(beta2).addcmul_(g, g, 1 - beta2);
      at::Tensor denom = (exp_avg_sq_[i].sqrt() / std::sqrt(bias_correction2)).add_(config_.eps);
      p.addcdiv_(exp_avg_[i], denom, -step_size);
    }
  }
}

std::vector<at::Tensor> AdamW::state_list() const {
  std::vector<at::Tensor> out = exp_avg_;
  out.insert(out.end(), exp_avg_sq_.begin(), exp_avg_sq_.end());
  return out;
}

NamedTensors AdamW::state_tensors() const {
  NamedTensors out;
  for (size_t i = 0; i < params_.size(); ++i) out.emplace_back("exp_avg/" + names_[i], exp_avg_[i]);
  for (size_t i = 0; i < params_.size(); ++i) out.emplace_back("exp_avg_sq/" + names_[i], exp_avg_sq_[i]);
  return out;
}

std::map<std::string, std::string> AdamW::state_metadata() const {
  json groups = json::array();
  for (const auto& g : groups_)
    groups.push_back(json{{"name", g.name}, {"size", g.indices.size()}, {"weight_decay", g.weight_decay},
                          {"lr_scale", g.lr_scale}});
  return {{"format", "m2sa-adamw"},
          {"step", std::to_string(steps_)},
          {"config", config_.to_json().dump()},
          {"groups", groups.dump()}};
}

void AdamW::load_state(const SafetensorsReader& reader) {
  const std::string file = reader.path().string();
  const auto& meta = reader.metadata();
  auto it = meta.find("format");
  M2SA_CHECK(it != meta.end() && it->second == "m2sa-adamw", file,
             ": not an m2sa AdamW state (metadata 'format' is not \"m2sa-adamw\")");
  it = meta.find("step");
  M2SA_CHECK(it != meta.end(), file, ": metadata 'step' is missing");
  int64_t steps = 0;
  try {
    size_t used = 0;
    steps = std::stoll(it->second, &used);
    M2SA_CHECK(used == it->second.size() && steps >= 0, "bad value");
  } catch (const std::exception&) {
    fail(file, ": metadata 'step' must be a non-negative integer, got \"", it->second, "\"");
  }
  std::vector<std::string> problems;
  std::set<std::string> expected;
  for (size_t i = 0; i < params_.size(); ++i) {
    for (const char* kind : {"exp_avg/", "exp_avg_sq/"}) {
      const std::string key = kind + names_[i];
      expected.insert(key);
      if (!reader.contains(key)) {
        problems.push_back("missing '" + key + "'");
        continue;
      }
      const TensorInfo& info = reader.info(key);
      if (info.shape != params_[i].sizes().vec() || info.dtype != at::kFloat)
        problems.push_back("'" + key + "' is " + safetensors_dtype_name(info.dtype) + " " + shape_string(info.shape) + ", expected F32 " +
                           shape_string(params_[i].sizes().vec()));
    }
  }
  for (const TensorInfo& info : reader.tensors())
    if (!expected.count(info.name)) problems.push_back("unexpected '" + info.name + "'");
  if (!problems.empty()) {
    std::string msg;
    for (size_t i = 0; i < problems.size() && i < 20; ++i) msg += "\n  " + problems[i];
    if (problems.size() > 20) msg += "\n  ... and " + std::to_string(problems.size() - 20) + " more";
    fail(file, ": optimizer state does not match the trainable parameters (", problems.size(), " problems):", msg);
  }
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    exp_avg_[i].copy_(reader.load("exp_avg/" + names_[i]));
    exp_avg_sq_[i].copy_(reader.load("exp_avg_sq/" + names_[i]));
  }
  steps_ = steps;
}

}  // namespace m2sa::train
