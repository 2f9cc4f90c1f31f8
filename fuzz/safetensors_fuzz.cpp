// Fuzz target: a .safetensors file (header JSON, dtypes, shapes, data offsets) through SafetensorsReader, then
// every tensor loaded and read.
#include "fuzz_target.h"
#include "fuzz_tensors.h"
#include "m2sa/io/safetensors.h"

M2SA_FUZZ_TARGET(safetensors) {
  const auto path = m2sa::fuzz::write_temp("model.safetensors", data, size);
  return m2sa::fuzz::swallow_error([&] {
    m2sa::SafetensorsReader reader(path);
    m2sa::fuzz::load_all_tensors(reader);
  });
}
