#pragma once
// Reader for `torch.save` zip checkpoints (SAM `.pth`, Hugging Face `pytorch_model*.bin`): name -> tensor.
// data.pkl is unpickled by m2sa's data-only unpickler (TOOLCHAIN.md section 4: the stock LibTorch readers
// fail on OrderedDict state dicts). Only the tensor-rebuild globals are accepted; anything else
// (`os.system`, `builtins.eval`, ...) is refused with an error. Tensor data is read lazily, per tensor.
// Untrusted files: the zip's central directory is checked before LibTorch's reader opens it, and a record that
// claims more bytes than the whole file holds is refused (torch.save stores records uncompressed, and the reader
// allocates a record's claimed size before reading it); the pickle limits are those of m2sa/io/pickle.h; sizes,
// strides and offsets are checked for overflow and against their storage. Every error names the file.
#include <ATen/core/Tensor.h>

#include <filesystem>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "m2sa/io/tensor_info.h"

namespace caffe2::serialize {
class PyTorchStreamReader;
}

namespace m2sa {

class MappedFile;

class TorchCheckpointReader {
 public:
  explicit TorchCheckpointReader(const std::filesystem::path& path);
  ~TorchCheckpointReader();

  // Nested dicts are flattened with '.', e.g. {"model": {"w": t}} -> "model.w". Non-tensor leaves are skipped.
  const std::vector<TensorInfo>& tensors() const { return infos_; }
  bool contains(const std::string& name) const { return index_.count(name) > 0; }
  at::Tensor load(const std::string& name) const;
  // After a tensor was copied (not viewed): its storage's mapped pages leave this process's memory.
  void release(const std::string& name) const;
  const std::filesystem::path& path() const { return path_; }
  // Tensors of records stored uncompressed (all of torch.save's) view a copy-on-write mapping of the file (like
  // SafetensorsReader); others are read into memory.

  struct StorageRef {
    std::string key;
    c10::ScalarType dtype;
    int64_t numel;
  };
  struct TensorRef {
    std::size_t storage;
    int64_t offset;
    std::vector<int64_t> size, stride;
  };

 private:
  std::filesystem::path path_;
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> reader_;
  std::shared_ptr<MappedFile> mapped_;
  std::unordered_set<std::string> stored_;  // records ("data/0") stored uncompressed
  std::vector<StorageRef> storages_;
  std::vector<TensorRef> refs_;
  std::vector<TensorInfo> infos_;
  std::vector<std::size_t> order_;  // infos_ index -> refs_ index
  std::unordered_map<std::string, std::size_t> index_;  // name -> infos_ index
};

}  // namespace m2sa
