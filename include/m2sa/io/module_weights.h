#pragma once
// Moving weights between a WeightStore and a torch::nn::Module by name, with a report of what did not match.
#include <torch/nn/module.h>

#include <string>
#include <vector>

#include "m2sa/io/checkpoint_keys.h"
#include "m2sa/io/safetensors.h"
#include "m2sa/io/weight_store.h"

namespace m2sa {

struct LoadOptions {
  KeyRules rules = key_rules::identity("checkpoint");
  // Module parameters that this checkpoint is expected to provide: those under one of these prefixes
  // (empty = all). The others are neither loaded nor reported missing.
  std::vector<std::string> expect_prefixes;
  // Module keys containing one of these may be missing (they keep their initial values), e.g. M2SA's
  // `compress_vit` when starting from a stock SAM checkpoint.
  std::vector<std::string> allow_missing;
  // Strict: missing (not allowed) or unexpected keys are errors. Shape mismatches are always errors.
  bool strict = true;
  // A stored tensor that already has the target's dtype, shape and (CPU) device and is contiguous becomes the
  // target's storage instead of being copied: for a file store it views the file's copy-on-write mapping, so the
  // pages are shared with the page cache (and with other processes loading the same file) and only written pages
  // are ever copied. Never for an in-memory store (WeightStore::from_tensors): its tensors are copied.
  bool alias_stored = false;
};

struct LoadReport {
  std::vector<std::string> loaded;
  std::vector<std::string> missing;      // expected by the module, absent from the checkpoint
  std::vector<std::string> allowed_missing;
  std::vector<std::string> unexpected;   // in the checkpoint, not in the module
  std::vector<std::string> mismatched;   // "name: checkpoint [a, b] vs module [c, d]"
  std::size_t ignored = 0;               // dropped by the key rules
  std::string summary() const;
};

// Copies every matching tensor into the module's parameters and buffers (converting dtype, keeping the
// module's device). Throws m2sa::Error naming the checkpoint and the keys on a strict failure.
LoadReport load_weights(torch::nn::Module& module, const WeightStore& store, const LoadOptions& options);

// Checks names and shapes only, without reading tensor data (works on meta-device modules).
LoadReport check_weights(const torch::nn::Module& module, const WeightStore& store, const LoadOptions& options);

// Parameters and buffers by name, in registration order (what a state_dict would hold).
NamedTensors module_state(const torch::nn::Module& module, const std::string& prefix = "");

}  // namespace m2sa
