#include "m2sa/io/weight_store.h"

#include <fstream>
#include <set>

#include "m2sa/core/error.h"
#include "m2sa/core/json_reader.h"
#include "m2sa/io/safetensors.h"
#include "m2sa/io/torch_checkpoint.h"

namespace m2sa {
namespace fs = std::filesystem;

namespace {

class SafetensorsSource : public WeightSource {
 public:
  explicit SafetensorsSource(const fs::path& p) : r_(p) {}
  const std::vector<TensorInfo>& tensors() const override { return r_.tensors(); }
  at::Tensor load(const std::string& name) const override { return r_.load(name); }
  std::string path() const override { return r_.path().string(); }
  void release(const std::string& name) const override { r_.release(name); }

 private:
  SafetensorsReader r_;
};

class TorchSource : public WeightSource {
 public:
  explicit TorchSource(const fs::path& p) : r_(p) {}
  const std::vector<TensorInfo>& tensors() const override { return r_.tensors(); }
  at::Tensor load(const std::string& name) const override { return r_.load(name); }
  std::string path() const override { return r_.path().string(); }
  void release(const std::string& name) const override { r_.release(name); }

 private:
  TorchCheckpointReader r_;
};

class MemorySource : public WeightSource {
 public:
  MemorySource(std::map<std::string, at::Tensor> t, std::string d) : t_(std::move(t)), d_(std::move(d)) {
    for (const auto& [k, v] : t_) infos_.push_back(TensorInfo{k, v.scalar_type(), v.sizes().vec()});
  }
  const std::vector<TensorInfo>& tensors() const override { return infos_; }
  at::Tensor load(const std::string& name) const override { return t_.at(name); }
  std::string path() const override { return d_; }
  bool in_memory() const override { return true; }

 private:
  std::map<std::string, at::Tensor> t_;
  std::vector<TensorInfo> infos_;
  std::string d_;
};

bool starts_with_zip_magic(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  char m[2] = {};
  in.read(m, 2);
  return in.gcount() == 2 && m[0] == 'P' && m[1] == 'K';
}

}  // namespace

std::shared_ptr<WeightSource> open_weight_file(const fs::path& path) {
  if (!fs::exists(path)) fail(path.string(), ": no such file");
  if (starts_with_zip_magic(path)) return std::make_shared<TorchSource>(path);
  const std::string ext = path.extension().string();
  if (ext == ".pth" || ext == ".bin" || ext == ".pt")
    fail(path.string(), ": not a zip-format torch.save checkpoint (legacy pre-1.6 files are not supported)");
  return std::make_shared<SafetensorsSource>(path);
}

void WeightStore::add_source(std::shared_ptr<WeightSource> src, const std::vector<std::string>* only) {
  const std::size_t s = sources_.size();
  sources_.push_back(src);
  std::set<std::string> wanted;
  if (only) wanted.insert(only->begin(), only->end());
  for (const TensorInfo& info : src->tensors()) {
    if (only && !wanted.count(info.name)) continue;
    auto it = index_.find(info.name);
    if (it != index_.end())
      fail(src->path(), ": tensor '", info.name, "' also appears in ", sources_[it->second.first]->path());
    index_[info.name] = {s, infos_.size()};
    infos_.push_back(info);
  }
}

WeightStore WeightStore::from_tensors(std::map<std::string, at::Tensor> tensors, std::string description) {
  WeightStore ws;
  ws.description_ = description;
  ws.add_source(std::make_shared<MemorySource>(std::move(tensors), std::move(description)));
  return ws;
}

WeightStore WeightStore::open(const fs::path& path) {
  WeightStore ws;
  ws.description_ = path.string();
  if (!fs::exists(path)) fail(path.string(), ": no such file or directory");
  if (!fs::is_directory(path)) {
    ws.add_source(open_weight_file(path));
    return ws;
  }
  for (const char* index_name : {"model.safetensors.index.json", "pytorch_model.bin.index.json"}) {
    const fs::path index = path / index_name;
    if (!fs::exists(index)) continue;
    json j = read_json_file(index);
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      fail(index.string(), ": expected an object with a \"weight_map\" object");
    std::map<std::string, std::vector<std::string>> by_shard;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string()) fail(index.string(), ": weight_map[\"", it.key(), "\"] must be a file name");
      const std::string shard = it.value().get<std::string>();
      if (shard.find('/') != std::string::npos || shard == ".." || shard.empty())
        fail(index.string(), ": weight_map[\"", it.key(), "\"] = \"", shard, "\" is not a file in this folder");
      by_shard[shard].push_back(it.key());
    }
    if (by_shard.empty()) fail(index.string(), ": weight_map is empty");
    for (const auto& [shard, names] : by_shard) {
      const fs::path shard_path = path / shard;
      if (!fs::exists(shard_path))
        fail(index.string(), ": lists shard ", shard, " (for '", names.front(), "' and ", names.size() - 1,
             " more), but ", shard_path.string(), " does not exist");
      auto src = open_weight_file(shard_path);
      std::set<std::string> present;
      for (const auto& info : src->tensors()) present.insert(info.name);
      for (const auto& n : names)
        if (!present.count(n)) fail(index.string(), ": says '", n, "' is in ", shard, ", but that file does not contain it");
      ws.add_source(src, &names);
    }
    return ws;
  }
  for (const char* single : {"model.safetensors", "pytorch_model.bin"}) {
    if (fs::exists(path / single)) {
      ws.add_source(open_weight_file(path / single));
      return ws;
    }
  }
  std::vector<fs::path> candidates;
  for (const auto& e : fs::directory_iterator(path)) {
    const std::string ext = e.path().extension().string();
    if (e.is_regular_file() && (ext == ".safetensors" || ext == ".pth" || ext == ".bin" || ext == ".pt"))
      candidates.push_back(e.path());
  }
  if (candidates.size() == 1) {
    ws.add_source(open_weight_file(candidates[0]));
    return ws;
  }
  fail(path.string(), ": folder has no model.safetensors(.index.json) or pytorch_model.bin(.index.json)",
       candidates.empty() ? " and no weight file" : " and several weight files (name one)");
}

const TensorInfo& WeightStore::info(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) fail(description_, ": no tensor named '", name, "'");
  return infos_[it->second.second];
}

at::Tensor WeightStore::load(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) fail(description_, ": no tensor named '", name, "'");
  return sources_[it->second.first]->load(name);
}

void WeightStore::release(const std::string& name) const {
  auto it = index_.find(name);
  if (it != index_.end()) sources_[it->second.first]->release(name);
}

bool WeightStore::in_memory() const {
  for (const auto& s : sources_)
    if (s->in_memory()) return true;
  return false;
}

std::string WeightStore::source_of(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? description_ : sources_[it->second.first]->path();
}

}  // namespace m2sa
