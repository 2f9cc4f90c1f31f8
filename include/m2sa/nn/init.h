#pragma once
// Where new parameters are created. By default on the CPU in fp32 with PyTorch's default initialisation;
// inside a `ShapeOnlyScope` on the meta device without any data, so that a 7B/13B model can be built to list
// its parameter names and shapes without allocating tens of GB (like `torch.device("meta")` in Python).
#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>

#include <cstdint>
#include <vector>

namespace m2sa::nn {

class ShapeOnlyScope {
 public:
  ShapeOnlyScope();
  ~ShapeOnlyScope();
  ShapeOnlyScope(const ShapeOnlyScope&) = delete;
  ShapeOnlyScope& operator=(const ShapeOnlyScope&) = delete;

 private:
  bool previous_;
};

bool shape_only();
c10::TensorOptions param_options();  // fp32 on CPU, or on meta inside a ShapeOnlyScope

// Uninitialised tensor with param_options(); callers fill it with one of the initialisers below.
at::Tensor new_tensor(const std::vector<int64_t>& shape);

// In-place initialisers (no-ops on meta tensors), as PyTorch's defaults.
void uniform_(at::Tensor& t, double bound);                   // U(-bound, bound)
void normal_(at::Tensor& t, double mean, double std);
void fill_(at::Tensor& t, double value);
// kaiming_uniform_(a = sqrt(5)) as in nn.Linear / nn.Conv2d: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
void default_weight_init_(at::Tensor& t, int64_t fan_in);

}  // namespace m2sa::nn
