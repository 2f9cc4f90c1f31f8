#pragma once
// One view over every supported weight container: a safetensors file, a torch.save zip (`.pth`/`.bin`/`.pt`),
// a Hugging Face folder (single file or sharded with `*.index.json`), or tensors in memory. Tensors are
// read lazily, one at a time, in their stored dtype on the CPU.
#include <ATen/core/Tensor.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "m2sa/io/tensor_info.h"

namespace m2sa {

// One container file.
class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual const std::vector<TensorInfo>& tensors() const = 0;
  virtual at::Tensor load(const std::string& name) const = 0;
  virtual std::string path() const = 0;
  virtual bool in_memory() const { return false; }  // from_tensors: live tensors others may write
  virtual void release(const std::string& /*name*/) const {}  // the tensor was copied: drop its mapped pages
};

// Opens a single file by its format (safetensors magic-less header or zip "PK").
std::shared_ptr<WeightSource> open_weight_file(const std::filesystem::path& path);

class WeightStore {
 public:
  WeightStore() = default;

  // A file or a folder. Folders: `model.safetensors.index.json` / `pytorch_model.bin.index.json` (shards
  // listed in weight_map), else `model.safetensors` / `pytorch_model.bin`, else the only `*.safetensors` /
  // `*.pth` / `*.bin` file in it.
  static WeightStore open(const std::filesystem::path& path);
  static WeightStore from_tensors(std::map<std::string, at::Tensor> tensors, std::string description = "memory");

  const std::vector<TensorInfo>& tensors() const { return infos_; }
  bool contains(const std::string& name) const { return index_.count(name) > 0; }
  const TensorInfo& info(const std::string& name) const;
  at::Tensor load(const std::string& name) const;
  // Call after copying a loaded tensor (and dropping every view of it): its mapped pages leave this process's
  // resident memory, so that a large checkpoint converted tensor by tensor never sits whole in RSS.
  void release(const std::string& name) const;
  // Where a tensor lives (file path), for messages.
  std::string source_of(const std::string& name) const;
  const std::string& description() const { return description_; }
  bool empty() const { return infos_.empty(); }
  // Made by from_tensors (its tensors are the caller's, not a file's).
  bool in_memory() const;

 private:
  void add_source(std::shared_ptr<WeightSource> src, const std::vector<std::string>* only = nullptr);
  std::vector<std::shared_ptr<WeightSource>> sources_;
  std::vector<TensorInfo> infos_;
  std::unordered_map<std::string, std::pair<std::size_t, std::size_t>> index_;  // name -> (source, info)
  std::string description_;
};

}  // namespace m2sa
