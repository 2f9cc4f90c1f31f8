#include "m2sa/io/module_weights.h"

#include <ATen/core/grad_mode.h>

#include <map>
#include <sstream>

#include "m2sa/core/error.h"

namespace m2sa {

namespace {

bool has_any(const std::string& key, const std::vector<std::string>& patterns) {
  for (const auto& p : patterns)
    if (key.find(p) != std::string::npos) return true;
  return false;
}

bool under(const std::string& key, const std::vector<std::string>& prefixes) {
  if (prefixes.empty()) return true;
  for (const auto& p : prefixes)
    if (key.compare(0, p.size(), p) == 0) return true;
  return false;
}

std::string list_some(const std::vector<std::string>& v, std::size_t n = 8) {
  std::ostringstream out;
  for (std::size_t i = 0; i < v.size() && i < n; ++i) out << "\n    " << v[i];
  if (v.size() > n) out << "\n    ... and " << v.size() - n << " more";
  return out.str();
}

template <typename OnMatch>
LoadReport match(const torch::nn::Module& module, const WeightStore& store, const LoadOptions& opt, OnMatch&& on_match) {
  std::map<std::string, at::Tensor> targets;
  for (const auto& [name, t] : module_state(module))
    if (under(name, opt.expect_prefixes)) targets[name] = t;

  LoadReport report;
  std::map<std::string, bool> seen;
  for (const TensorInfo& info : store.tensors()) {
    auto mapped = opt.rules.apply(info.name);
    if (!mapped) {
      ++report.ignored;
      continue;
    }
    auto it = targets.find(*mapped);
    if (it == targets.end()) {
      report.unexpected.push_back(info.name == *mapped ? info.name : info.name + " (as " + *mapped + ")");
      continue;
    }
    seen[*mapped] = true;
    const auto shape = it->second.sizes().vec();
    if (shape != info.shape) {
      report.mismatched.push_back(*mapped + ": checkpoint " + shape_string(info.shape) + " vs model " + shape_string(shape));
      continue;
    }
    on_match(info.name, it->second);
    report.loaded.push_back(*mapped);
  }
  for (const auto& [name, t] : targets) {
    if (seen.count(name)) continue;
    (has_any(name, opt.allow_missing) ? report.allowed_missing : report.missing).push_back(name);
  }
  const bool bad = !report.mismatched.empty() || (opt.strict && (!report.missing.empty() || !report.unexpected.empty()));
  if (bad) {
    std::ostringstream msg;
    msg << store.description() << " (" << opt.rules.name << "): does not fit the model";
    if (!report.mismatched.empty()) msg << "\n  shape mismatches:" << list_some(report.mismatched);
    if (!report.missing.empty()) msg << "\n  missing from the checkpoint:" << list_some(report.missing);
    if (!report.unexpected.empty()) msg << "\n  unexpected in the checkpoint:" << list_some(report.unexpected);
    throw Error(msg.str());
  }
  return report;
}

}  // namespace

std::string LoadReport::summary() const {
  std::ostringstream s;
  s << loaded.size() << " tensors loaded";
  if (!allowed_missing.empty()) s << ", " << allowed_missing.size() << " kept at init";
  if (!missing.empty()) s << ", " << missing.size() << " missing";
  if (!unexpected.empty()) s << ", " << unexpected.size() << " unexpected";
  if (ignored) s << ", " << ignored << " ignored";
  return s.str();
}

LoadReport load_weights(torch::nn::Module& module, const WeightStore& store, const LoadOptions& options) {
  // Check everything first so that a failed load leaves the module untouched.
  check_weights(module, store, options);
  at::NoGradGuard no_grad;
  const bool alias = options.alias_stored && !store.in_memory();
  return match(module, store, options, [&](const std::string& ckpt_name, at::Tensor& target) {
    if (target.device().is_meta()) fail("cannot load '", ckpt_name, "' into a meta-device (shape-only) model");
    at::Tensor src = store.load(ckpt_name);
    if (alias && target.device().is_cpu() && src.device().is_cpu() &&
        src.scalar_type() == target.scalar_type() && src.sizes() == target.sizes() && src.is_contiguous() &&
        target.is_contiguous()) {
      // Variable::set_data without its checks (as allocate_shape_only): the handle keeps its autograd state.
      target.unsafeGetTensorImpl()->shallow_copy_from(src.getIntrusivePtr());
      return;
    }
    target.copy_(src);
    src = at::Tensor();
    store.release(ckpt_name);
  });
}

LoadReport check_weights(const torch::nn::Module& module, const WeightStore& store, const LoadOptions& options) {
  return match(module, store, options, [](const std::string&, at::Tensor&) {});
}

namespace {
// state_dict order: a module's own parameters, then its buffers, then its children's, depth first.
void collect_state(const torch::nn::Module& m, const std::string& prefix, NamedTensors& out) {
  for (const auto& p : m.named_parameters(/*recurse=*/false)) out.emplace_back(prefix + p.key(), p.value());
  for (const auto& b : m.named_buffers(/*recurse=*/false)) out.emplace_back(prefix + b.key(), b.value());
  for (const auto& c : m.named_children()) collect_state(*c.value(), prefix + c.key() + ".", out);
}
}  // namespace

NamedTensors module_state(const torch::nn::Module& module, const std::string& prefix) {
  NamedTensors out;
  collect_state(module, prefix, out);
  return out;
}

}  // namespace m2sa
