#pragma once
// Names of dtypes as users and file formats spell them.
#include <c10/core/ScalarType.h>

#include <string>

namespace m2sa {

// "fp32"/"float32"/"f32", "bf16"/"bfloat16", "fp16"/"float16"/"half". Errors name the accepted spellings.
c10::ScalarType parse_precision(const std::string& name);
// "fp32", "bf16", "fp16", ... (the CLI spelling).
std::string precision_name(c10::ScalarType dtype);

// safetensors dtype strings: F32 F16 BF16 F64 I64 I32 I16 I8 U8 BOOL.
c10::ScalarType safetensors_dtype(const std::string& name);  // throws on unknown names
std::string safetensors_dtype_name(c10::ScalarType dtype);

}  // namespace m2sa
