#include "m2sa/train/rng_state.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>

#include <mutex>
#include <sstream>

#include "m2sa/core/error.h"

namespace m2sa::train {

namespace {
std::string to_hex(const at::Tensor& bytes) {
  static const char* digits = "0123456789abcdef";
  const at::Tensor b = bytes.contiguous().cpu();
  const auto* p = b.data_ptr<uint8_t>();
  std::string out;
  out.reserve(static_cast<size_t>(b.numel()) * 2);
  for (int64_t i = 0; i < b.numel(); ++i) {
    out.push_back(digits[p[i] >> 4]);
    out.push_back(digits[p[i] & 15]);
  }
  return out;
}

at::Tensor from_hex(const std::string& hex, const std::string& where) {
  M2SA_CHECK(hex.size() % 2 == 0, where, ": generator state has an odd number of hex digits");
  at::Tensor t = at::empty({static_cast<int64_t>(hex.size() / 2)}, at::TensorOptions().dtype(at::kByte));
  auto* p = t.data_ptr<uint8_t>();
  auto value = [&](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    fail(where, ": generator state contains the non-hex character '", c, "'");
  };
  for (size_t i = 0; i < hex.size() / 2; ++i) p[i] = static_cast<uint8_t>(value(hex[2 * i]) * 16 + value(hex[2 * i + 1]));
  return t;
}

std::string get_state(at::Generator gen) {
  std::lock_guard<std::mutex> lock(gen.mutex());
  return to_hex(gen.get_state());
}

void set_state(at::Generator gen, const std::string& hex, const std::string& where) {
  at::Tensor state = from_hex(hex, where);
  std::lock_guard<std::mutex> lock(gen.mutex());
  try {
    gen.set_state(state);
  } catch (const std::exception& e) {
    fail(where, ": cannot restore the generator state: ", e.what());
  }
}
}  // namespace

void RngRegistry::add(const std::string& name, std::mt19937_64* generator) {
  M2SA_CHECK(generator != nullptr, "RngRegistry: null generator for '", name, "'");
  M2SA_CHECK(generators_.emplace(name, generator).second, "RngRegistry: '", name, "' is registered twice");
}

json RngRegistry::capture() const {
  json out;
  out["torch_cpu"] = get_state(at::detail::getDefaultCPUGenerator());
  if (device_.is_cuda()) out["torch_cuda"] = get_state(at::globalContext().defaultGenerator(device_));
  json mt = json::object();
  for (const auto& [name, gen] : generators_) {
    std::ostringstream s;
    s << *gen;
    mt[name] = s.str();
  }
  out["mt19937_64"] = mt;
  return out;
}

void RngRegistry::restore(const json& state, const std::string& where) const {
  M2SA_CHECK(state.is_object() && state.contains("torch_cpu") && state["torch_cpu"].is_string(), where,
             ": rng state must be an object with a \"torch_cpu\" string");
  set_state(at::detail::getDefaultCPUGenerator(), state["torch_cpu"].get<std::string>(), where + ".torch_cpu");
  if (device_.is_cuda()) {
    M2SA_CHECK(state.contains("torch_cuda") && state["torch_cuda"].is_string(), where,
               ": no \"torch_cuda\" generator state (the checkpoint was written by a CPU run)");
    set_state(at::globalContext().defaultGenerator(device_), state["torch_cuda"].get<std::string>(),
              where + ".torch_cuda");
  }
  const json mt = state.value("mt19937_64", json::object());
  for (const auto& [name, gen] : generators_) {
    if (!mt.contains(name) || !mt[name].is_string()) {
      std::string saved;
      for (auto it = mt.begin(); it != mt.end(); ++it) saved += (saved.empty() ? "" : ", ") + it.key();
      fail(where, ": no state for the generator '", name, "' (saved generators: ", saved.empty() ? "none" : saved,
           ")");
    }
    std::istringstream s(mt[name].get<std::string>());
    std::mt19937_64 restored;
    s >> restored;
    M2SA_CHECK(!s.fail(), where, ": the state of generator '", name, "' is malformed");
    *gen = restored;
  }
}

}  // namespace m2sa::train
