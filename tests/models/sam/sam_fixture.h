#pragma once
// The sam_tiny fixture ($M2SA_FIXTURE_DIR/sam_tiny.{safetensors,json,pth}) as the SAM tests read it: the sidecar,
// the model config adapted from the sidecar's format, tensors and per-output tolerances. Nothing about the
// fixture's sizes is assumed here: everything comes from the sidecar and the tensor shapes.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "m2sa/core/json_reader.h"
#include "m2sa/io/module_weights.h"
#include "m2sa/io/weight_store.h"
#include "m2sa/models/sam/sam.h"
#include "m2sa/models/sam/sam_config.h"

namespace m2sa::test {

// The sidecar's `config` object (segment_anything constructor arguments plus descriptive fields) -> SamConfig,
// through SamConfig::from_json. Fields that only restate derived sizes are checked for consistency.
sam::SamConfig sam_config_from_sidecar(const json& config, const std::string& where);

// Key rules for the fixture safetensors: the three `Sam` prefixes are weights; every other entry (`input.*`,
// `output.*`) is a test tensor and is ignored.
KeyRules sam_fixture_rules();

class SamFixture {
 public:
  SamFixture();  // reads sam_tiny.json and opens sam_tiny.safetensors

  const json& sidecar() const { return sidecar_; }
  const sam::SamConfig& config() const { return config_; }
  const WeightStore& store() const { return store_; }

  at::Tensor tensor(const std::string& name) const;  // fails the test if absent
  double atol(const std::string& output) const;      // the sidecar's atol_fp32 of that output
  bool has(const std::string& name) const { return store_.contains(name); }
  // Names of the sidecar's entries of one kind ("weight", "input", "output"), sorted by name.
  std::vector<std::string> names_of_kind(const std::string& kind) const;

  std::pair<int64_t, int64_t> input_size() const;     // config.input_size (h, w)
  std::pair<int64_t, int64_t> original_size() const;  // config.original_size (H, W)

  // A Sam built from `config` with the fixture weights loaded strictly (compress_vit, if enabled, stays at its
  // initial values since the fixture has none).
  sam::Sam load_model(const sam::SamConfig& config) const;
  sam::Sam load_model() const { return load_model(config_); }
  LoadReport load_into(sam::SamImpl& model) const;

 private:
  json sidecar_;
  sam::SamConfig config_;
  WeightStore store_;
};

}  // namespace m2sa::test
