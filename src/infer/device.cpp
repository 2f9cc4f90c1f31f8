#include "m2sa/infer/device.h"

#include <ATen/Context.h>

#include <cstdlib>

#include "m2sa/core/dtype.h"
#include "m2sa/core/error.h"

namespace m2sa::infer {

c10::Device parse_device(const std::string& name) {
  if (name == "cpu") return c10::Device(c10::kCPU);
  int64_t index = 0;
  if (name != "cuda") {
    const std::string prefix = "cuda:";
    const std::string rest = name.compare(0, prefix.size(), prefix) == 0 ? name.substr(prefix.size()) : std::string();
    M2SA_CHECK(!rest.empty() && rest.find_first_not_of("0123456789") == std::string::npos && rest.size() <= 3,
               "device \"", name, "\" is not supported; expected \"cpu\", \"cuda\" or \"cuda:N\"");
    index = std::atoll(rest.c_str());
  }
  M2SA_CHECK(at::hasCUDA(), "device \"", name, "\": CUDA is not available (this LibTorch build has no CUDA support, or "
             "no GPU is visible); use --device cpu");
  const auto gpus = static_cast<int64_t>(at::getNumGPUs());
  M2SA_CHECK(index < gpus, "device \"", name, "\": only ", gpus, " GPU(s) are visible (cuda:0 .. cuda:", gpus - 1, ")");
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
}

void check_precision(c10::ScalarType dtype, const c10::Device& device) {
  M2SA_CHECK(dtype == c10::kFloat || dtype == c10::kBFloat16 || dtype == c10::kHalf, "precision ",
             precision_name(dtype), " is not supported; expected fp32, bf16 or fp16");
  M2SA_CHECK(!(dtype == c10::kHalf && device.is_cpu()),
             "precision fp16 needs --device cuda: this LibTorch has no half-precision matrix multiply on the CPU "
             "(\"addmm_impl_cpu_\" not implemented for 'Half'); use --precision bf16 or fp32 on the CPU");
}

std::string device_name(const c10::Device& device) {
  if (device.is_cpu()) return "cpu";
  return device.str();
}

}  // namespace m2sa::infer
