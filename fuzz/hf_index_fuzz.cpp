// Fuzz target: a Hugging Face `model.safetensors.index.json` (weight_map -> shard names) through WeightStore::open
// on a folder that holds it and one small valid shard, then every listed tensor loaded.
#include <ATen/ATen.h>

#include "fuzz_target.h"
#include "fuzz_tensors.h"
#include "m2sa/io/safetensors.h"
#include "m2sa/io/weight_store.h"

M2SA_FUZZ_TARGET(hf_index) {
  namespace fs = std::filesystem;
  // The shard the seeds name (written once per process: the fuzzer varies the index, not the shard).
  static const fs::path dir = [] {
    const fs::path d = m2sa::fuzz::TempDir::get() / "hf_index";
    fs::create_directories(d);
    m2sa::write_safetensors(d / "model-00001-of-00001.safetensors",
                            {{"a.weight", at::arange(6, at::kFloat).reshape({2, 3})}, {"b.bias", at::ones({4})}});
    return d;
  }();
  m2sa::fuzz::write_temp("hf_index/model.safetensors.index.json", data, size);
  return m2sa::fuzz::swallow_error([&] {
    const m2sa::WeightStore store = m2sa::WeightStore::open(dir);
    m2sa::fuzz::load_all_tensors(store);
  });
}
