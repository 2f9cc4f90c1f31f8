#pragma once
// safetensors (https://github.com/huggingface/safetensors): u64 little-endian header length N, N bytes of
// JSON {name: {dtype, shape, data_offsets:[begin,end]}, "__metadata__": {str: str}}, then the data.
// The reader maps the file and validates the whole header before handing out any tensor.
#include <ATen/core/Tensor.h>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "m2sa/io/mapped_file.h"
#include "m2sa/io/tensor_info.h"

namespace m2sa {

class SafetensorsReader {
 public:
  // Headers above this size are refused (the format's own limit is 100 MB).
  static constexpr std::size_t kMaxHeaderBytes = 100u << 20;

  explicit SafetensorsReader(const std::filesystem::path& path);

  const std::vector<TensorInfo>& tensors() const { return infos_; }  // in data order
  bool contains(const std::string& name) const { return index_.count(name) > 0; }
  const TensorInfo& info(const std::string& name) const;
  // CPU tensor viewing the mapping (copy-on-write); copied when the data is not aligned for its dtype.
  at::Tensor load(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // After a tensor was copied (not viewed): its pages leave this process's memory (MappedFile::release).
  void release(const std::string& name) const;
  const std::filesystem::path& path() const { return file_->path(); }

 private:
  struct Entry {
    std::size_t info;
    std::size_t begin, end;  // absolute byte offsets in the file
  };
  std::shared_ptr<MappedFile> file_;
  std::vector<TensorInfo> infos_;
  std::unordered_map<std::string, Entry> index_;
  std::map<std::string, std::string> metadata_;
};

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// Writes tensors (any device; made contiguous on CPU) atomically: temp file + fsync + rename.
void write_safetensors(const std::filesystem::path& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Streaming variant for files larger than memory: the header is written from `infos` (names, dtypes, shapes, in
// file order), then `make(info)` is called once per tensor, in order, and its bytes written before the next call,
// so only one tensor is in memory at a time. Each returned tensor must have exactly the info's dtype and shape
// (an error names the tensor otherwise). Atomic like write_safetensors.
using MakeTensor = std::function<at::Tensor(const TensorInfo&)>;
void write_safetensors_streamed(const std::filesystem::path& path, const std::vector<TensorInfo>& infos,
                                const MakeTensor& make, const std::map<std::string, std::string>& metadata = {});

}  // namespace m2sa
