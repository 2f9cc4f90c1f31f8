#pragma once
// Where and in which precision inference runs, checked up front with messages users can act on.
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <string>

namespace m2sa::infer {

// "cpu", "cuda" or "cuda:N". CUDA must be available in this LibTorch build and N < the number of visible GPUs;
// otherwise the error says so and suggests --device cpu.
c10::Device parse_device(const std::string& name);

// fp32 and bf16 run anywhere; fp16 only on CUDA (LibTorch 1.13 has no CPU half-precision matmul: "addmm_impl_cpu_"
// not implemented for 'Half'). Anything else is refused.
void check_precision(c10::ScalarType dtype, const c10::Device& device);

// "cpu" or "cuda:0".
std::string device_name(const c10::Device& device);

}  // namespace m2sa::infer
