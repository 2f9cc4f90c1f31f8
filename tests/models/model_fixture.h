#pragma once
// A golden model fixture (`<name>.safetensors` + `<name>.json` sidecar, tests/fixtures/reference/README.md): weights,
// inputs and expected outputs by name, with per-output tolerances from the sidecar.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "m2sa/core/json_reader.h"
#include "m2sa/io/safetensors.h"
#include "m2sa/io/weight_store.h"
#include "test_util.h"

namespace m2sa::test {

class ModelFixture {
 public:
  explicit ModelFixture(const std::string& name)
      : sidecar_(read_json_file(fixture(name + ".json"))), reader_(fixture(name + ".safetensors")) {}

  const json& sidecar() const { return sidecar_; }
  const json& config() const { return sidecar_.at("config"); }

  at::Tensor get(const std::string& name) const {
    if (!reader_.contains(name)) throw std::runtime_error("fixture has no tensor " + name);
    return reader_.load(name).to(device(), /*non_blocking=*/false, /*copy=*/true);
  }
  bool has(const std::string& name) const { return reader_.contains(name); }
  std::vector<int64_t> shape(const std::string& name) const { return reader_.info(name).shape; }

  // Names of the sidecar's tensors of one kind ("weight", "input", "output"), in sidecar order.
  std::vector<std::string> names(const std::string& kind) const {
    std::vector<std::string> out;
    for (auto it = sidecar_.at("tensors").begin(); it != sidecar_.at("tensors").end(); ++it)
      if (it.value().at("kind") == kind) out.push_back(it.key());
    return out;
  }

  double atol(const std::string& output) const {
    const json& t = sidecar_.at("tensors").at(output);
    if (t.contains("atol_fp32")) return t.at("atol_fp32").get<double>();
    return sidecar_.at("tolerances").at("default_atol_fp32").get<double>();
  }

  // Only the weights, as a store a model can load from.
  WeightStore weights() const {
    std::map<std::string, at::Tensor> w;
    for (const auto& n : names("weight")) w[n] = get(n);
    return WeightStore::from_tensors(std::move(w), reader_.path().string() + " (weights)");
  }

 private:
  json sidecar_;
  SafetensorsReader reader_;
};

// A full-size *_keys.json file: from $M2SA_FIXTURE_DIR when it has one, else from the shared fixtures (these
// layouts do not depend on the fixture set).
inline std::filesystem::path key_file(const std::string& file) {
  std::filesystem::path p = fixture_dir() / file;
  if (!std::filesystem::exists(p)) p = std::filesystem::path(M2SA_FIXTURE_DIR_DEFAULT) / file;
  return p;
}

// The names and shapes of a *_keys.json list.
// Only names starting with one of `prefixes` (all when empty).
inline std::map<std::string, std::vector<int64_t>> key_list(const std::string& file,
                                                            const std::vector<std::string>& prefixes = {}) {
  const json j = read_json_file(key_file(file));
  std::map<std::string, std::vector<int64_t>> out;
  for (const auto& k : j.at("keys")) {
    const auto name = k.at("name").get<std::string>();
    bool keep = prefixes.empty();
    for (const auto& pre : prefixes) keep = keep || name.rfind(pre, 0) == 0;
    if (keep) out[name] = k.at("shape").get<std::vector<int64_t>>();
  }
  return out;
}

}  // namespace m2sa::test
