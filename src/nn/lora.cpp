#include "m2sa/nn/lora.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <map>

#include "m2sa/core/error.h"
#include "m2sa/io/checkpoint_keys.h"
#include "m2sa/io/module_weights.h"
#include "m2sa/nn/layers.h"

namespace m2sa::nn {

namespace {

bool contains_any(const std::string& s, const std::vector<std::string>& parts) {
  for (const auto& p : parts)
    if (s.find(p) != std::string::npos) return true;
  return false;
}

// Every nn::Linear under root with its dotted name (root itself included, as "").
std::vector<std::pair<std::string, LinearImpl*>> linears(const torch::nn::Module& root) {
  std::vector<std::pair<std::string, LinearImpl*>> out;
  for (const auto& item : root.named_modules("", /*include_self=*/true)) {
    if (auto* lin = dynamic_cast<LinearImpl*>(item.value().get())) out.emplace_back(item.key(), lin);
  }
  return out;
}

// "file: a.b" for messages about a whole config object.
std::string context_of(const JsonReader& reader) {
  std::string s = reader.location("");
  while (!s.empty() && (s.back() == '.' || s.back() == ' ' || s.back() == ':')) s.pop_back();
  return s;
}

std::string join(const std::string& prefix, const std::string& name) { return prefix.empty() ? name : prefix + "." + name; }

}  // namespace

LoraConfig LoraConfig::from_json(const JsonReader& reader) {
  LoraConfig c;
  c.r = reader.get_or<int64_t>("r", c.r);
  c.alpha = reader.get_or<double>("lora_alpha", c.alpha);
  c.dropout = reader.get_or<double>("lora_dropout", c.dropout);
  c.target_modules = reader.get_or<std::vector<std::string>>("target_modules", c.target_modules);
  c.exclude = reader.get_or<std::vector<std::string>>("exclude_modules", c.exclude);
  reader.finish();
  c.validate(context_of(reader));
  return c;
}

json LoraConfig::to_json() const {
  return json{{"r", r}, {"lora_alpha", alpha}, {"lora_dropout", dropout}, {"target_modules", target_modules},
              {"exclude_modules", exclude}};
}

void LoraConfig::validate(const std::string& where) const {
  M2SA_CHECK(r >= 1, where, ": r must be >= 1, got ", r);
  M2SA_CHECK(std::isfinite(alpha) && alpha > 0.0, where, ": lora_alpha must be a positive number, got ", alpha);
  M2SA_CHECK(dropout >= 0.0 && dropout < 1.0, where, ": lora_dropout must be in [0, 1), got ", dropout);
  M2SA_CHECK(!target_modules.empty(), where, ": target_modules is empty");
  for (const auto& t : target_modules) M2SA_CHECK(!t.empty(), where, ": target_modules holds an empty name");
  for (const auto& t : exclude) M2SA_CHECK(!t.empty(), where, ": exclude_modules holds an empty name");
}

bool lora_name_matches(const std::string& module_name, const LoraConfig& config) {
  return contains_any(module_name, config.target_modules) && !contains_any(module_name, config.exclude);
}

std::vector<std::string> apply_lora(torch::nn::Module& root, const LoraConfig& config) {
  config.validate();
  std::vector<std::pair<std::string, LinearImpl*>> chosen;
  for (const auto& [name, lin] : linears(root)) {
    // The adapter's own lora_A/lora_B linears are never targets.
    if (name.find("lora_A") != std::string::npos || name.find("lora_B") != std::string::npos) continue;
    if (!lora_name_matches(name, config)) continue;
    M2SA_CHECK(!lin->has_lora(), "apply_lora: '", name, "' already has a LoRA adapter");
    chosen.emplace_back(name, lin);
  }
  if (chosen.empty()) {
    std::string targets, excl;
    for (const auto& t : config.target_modules) targets += (targets.empty() ? "" : ", ") + t;
    for (const auto& t : config.exclude) excl += (excl.empty() ? "" : ", ") + t;
    fail("apply_lora: no linear layer matches the target modules [", targets, "] outside [", excl, "]");
  }
  std::vector<std::string> names;
  for (auto& [name, lin] : chosen) {
    lin->enable_lora(config.r, config.alpha, config.dropout);
    names.push_back(name);
  }
  return names;
}

std::vector<std::string> lora_layer_names(const torch::nn::Module& root) {
  std::vector<std::string> names;
  for (const auto& [name, lin] : linears(root))
    if (lin->has_lora()) names.push_back(name);
  return names;
}

std::vector<std::string> merge_all_lora(torch::nn::Module& root) {
  std::vector<std::string> names;
  for (const auto& [name, lin] : linears(root)) {
    if (!lin->has_lora() || lin->lora_merged()) continue;
    lin->merge_lora();
    names.push_back(name);
  }
  return names;
}

std::vector<std::string> unmerge_all_lora(torch::nn::Module& root) {
  std::vector<std::string> names;
  for (const auto& [name, lin] : linears(root)) {
    if (!lin->has_lora() || !lin->lora_merged()) continue;
    lin->unmerge_lora();
    names.push_back(name);
  }
  return names;
}

int64_t mark_only_lora_trainable(torch::nn::Module& root) {
  int64_t trainable = 0;
  for (auto& item : root.named_parameters(/*recurse=*/true)) {
    const bool lora = is_lora_key(item.key());
    item.value().set_requires_grad(lora);
    trainable += lora;
  }
  return trainable;
}

bool is_lora_key(const std::string& key) {
  return key.find(".lora_A.") != std::string::npos || key.find(".lora_B.") != std::string::npos ||
         key.rfind("lora_A.", 0) == 0 || key.rfind("lora_B.", 0) == 0;
}

NamedTensors lora_state(const torch::nn::Module& root) {
  NamedTensors out;
  for (auto& [name, t] : module_state(root))
    if (is_lora_key(name)) out.emplace_back(name, t);
  return out;
}

namespace {
// weight key of each adapter-carrying linear -> the linear.
std::map<std::string, LinearImpl*> lora_weight_keys(const torch::nn::Module& root) {
  std::map<std::string, LinearImpl*> out;
  for (const auto& [name, lin] : linears(root))
    if (lin->has_lora()) out[join(name, "weight")] = lin;
  return out;
}
}  // namespace

NamedTensors peft_state(const torch::nn::Module& root) {
  const auto adapters = lora_weight_keys(root);
  at::NoGradGuard no_grad;
  NamedTensors out;
  for (auto& [name, t] : module_state(root)) {
    at::Tensor value = t;
    auto it = adapters.find(name);
    if (it != adapters.end() && it->second->lora_merged())
      value = t - it->second->lora_delta().to(t.scalar_type());
    out.emplace_back(key_rules::kPeft + name, value);
  }
  return out;
}

NamedTensors merged_state(const torch::nn::Module& root) {
  const auto adapters = lora_weight_keys(root);
  at::NoGradGuard no_grad;
  NamedTensors out;
  for (auto& [name, t] : module_state(root)) {
    if (is_lora_key(name)) continue;
    at::Tensor value = t;
    auto it = adapters.find(name);
    if (it != adapters.end() && !it->second->lora_merged())
      value = t + it->second->lora_delta().to(t.scalar_type());
    out.emplace_back(name, value);
  }
  return out;
}

}  // namespace m2sa::nn
