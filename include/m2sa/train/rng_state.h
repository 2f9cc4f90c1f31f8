#pragma once
// Random-number-generator state for exact resume: LibTorch's default CPU generator (dropout, randperm, ...),
// the default CUDA generator of the training device when there is one, and any std::mt19937_64 the caller
// registers (samplers, augmentation). Captured as JSON so that it travels in a checkpoint's state.json.
#include <c10/core/Device.h>

#include <map>
#include <random>
#include <string>

#include "m2sa/core/json_reader.h"

namespace m2sa::train {

class RngRegistry {
 public:
  // `generator` must outlive the registry; the name keys it in the checkpoint.
  void add(const std::string& name, std::mt19937_64* generator);
  // Also capture/restore the default generator of this CUDA device (ignored for CPU devices).
  void set_device(c10::Device device) { device_ = device; }

  // {"torch_cpu": hex, "torch_cuda": hex (optional), "mt19937_64": {name: state text}}
  json capture() const;
  // Restores everything captured; refuses a capture without one of our registered generators (naming it).
  void restore(const json& state, const std::string& where) const;

 private:
  std::map<std::string, std::mt19937_64*> generators_;
  c10::Device device_ = c10::Device(c10::DeviceType::CPU);
};

}  // namespace m2sa::train
