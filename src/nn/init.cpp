#include "m2sa/nn/init.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>

namespace m2sa::nn {

namespace {
thread_local bool g_shape_only = false;
}

ShapeOnlyScope::ShapeOnlyScope() : previous_(g_shape_only) { g_shape_only = true; }
ShapeOnlyScope::~ShapeOnlyScope() { g_shape_only = previous_; }

bool shape_only() { return g_shape_only; }

c10::TensorOptions param_options() {
  return c10::TensorOptions().dtype(at::kFloat).device(g_shape_only ? at::kMeta : at::kCPU);
}

at::Tensor new_tensor(const std::vector<int64_t>& shape) { return at::empty(shape, param_options()); }

void uniform_(at::Tensor& t, double bound) {
  if (t.is_meta()) return;
  at::NoGradGuard g;
  t.uniform_(-bound, bound);
}

void normal_(at::Tensor& t, double mean, double std) {
  if (t.is_meta()) return;
  at::NoGradGuard g;
  t.normal_(mean, std);
}

void fill_(at::Tensor& t, double value) {
  if (t.is_meta()) return;
  at::NoGradGuard g;
  t.fill_(value);
}

void default_weight_init_(at::Tensor& t, int64_t fan_in) {
  uniform_(t, fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0);
}

}  // namespace m2sa::nn
