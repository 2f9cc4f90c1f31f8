#include "m2sa/core/dtype.h"

#include "m2sa/core/error.h"

namespace m2sa {

c10::ScalarType parse_precision(const std::string& name) {
  if (name == "fp32" || name == "float32" || name == "f32" || name == "float") return c10::kFloat;
  if (name == "bf16" || name == "bfloat16") return c10::kBFloat16;
  if (name == "fp16" || name == "float16" || name == "half" || name == "f16") return c10::kHalf;
  fail("unknown precision '", name, "': expected fp32, bf16 or fp16");
}

std::string precision_name(c10::ScalarType dtype) {
  switch (dtype) {
    case c10::kFloat: return "fp32";
    case c10::kBFloat16: return "bf16";
    case c10::kHalf: return "fp16";
    default: return c10::toString(dtype);
  }
}

c10::ScalarType safetensors_dtype(const std::string& name) {
  if (name == "F32") return c10::kFloat;
  if (name == "F16") return c10::kHalf;
  if (name == "BF16") return c10::kBFloat16;
  if (name == "F64") return c10::kDouble;
  if (name == "I64") return c10::kLong;
  if (name == "I32") return c10::kInt;
  if (name == "I16") return c10::kShort;
  if (name == "I8") return c10::kChar;
  if (name == "U8") return c10::kByte;
  if (name == "BOOL") return c10::kBool;
  fail("unknown safetensors dtype '", name, "' (supported: F32 F16 BF16 F64 I64 I32 I16 I8 U8 BOOL)");
}

std::string safetensors_dtype_name(c10::ScalarType dtype) {
  switch (dtype) {
    case c10::kFloat: return "F32";
    case c10::kHalf: return "F16";
    case c10::kBFloat16: return "BF16";
    case c10::kDouble: return "F64";
    case c10::kLong: return "I64";
    case c10::kInt: return "I32";
    case c10::kShort: return "I16";
    case c10::kChar: return "I8";
    case c10::kByte: return "U8";
    case c10::kBool: return "BOOL";
    default: fail("dtype ", c10::toString(dtype), " cannot be stored in safetensors");
  }
}

}  // namespace m2sa
