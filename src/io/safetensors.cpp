#include "m2sa/io/safetensors.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <c10/core/ScalarType.h>

#include <algorithm>
#include <cstring>

#include "m2sa/core/atomic_file.h"
#include "m2sa/core/checked_math.h"
#include "m2sa/core/dtype.h"
#include "m2sa/core/error.h"
#include "m2sa/core/json_reader.h"

namespace m2sa {

namespace {

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::size_t tensor_nbytes_or_fail(const TensorInfo& info, const std::string& where) {
  uint64_t n = 0;
  if (!checked_nbytes(info.shape, info.dtype, n)) {
    for (int64_t d : info.shape)
      if (d < 0) fail(where, ": negative dimension in shape ", shape_string(info.shape));
    fail(where, ": shape ", shape_string(info.shape), " overflows");
  }
  return static_cast<std::size_t>(n);
}

}  // namespace

SafetensorsReader::SafetensorsReader(const std::filesystem::path& path) : file_(MappedFile::open(path)) {
  const std::string file = path.string();
  const std::size_t size = file_->size();
  if (size < 8) fail(file, ": not a safetensors file: ", size, " bytes, shorter than the 8-byte header length");
  const uint64_t header_len = read_u64_le(file_->data());
  if (header_len > kMaxHeaderBytes)
    fail(file, ": safetensors header length ", header_len, " exceeds the limit of ", kMaxHeaderBytes, " bytes");
  if (header_len > size - 8)
    fail(file, ": safetensors header length ", header_len, " is larger than the file (", size,
         " bytes): truncated or not a safetensors file");
  const std::size_t data_start = 8 + static_cast<std::size_t>(header_len);
  const std::size_t data_size = size - data_start;

  json header;
  try {
    header = json::parse(file_->data() + 8, file_->data() + data_start);
  } catch (const std::exception& e) {
    fail(file, ": safetensors header is not valid JSON: ", e.what());
  }
  if (!header.is_object()) fail(file, ": safetensors header is not a JSON object");

  struct Range {
    std::size_t begin, end;
    std::string name;
  };
  std::vector<Range> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail(file, ": __metadata__ must be an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) fail(file, ": __metadata__.", m.key(), " must be a string");
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = file + ": tensor '" + name + "'";
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      fail(where, ": entry must be an object with dtype, shape and data_offsets");
    TensorInfo info;
    info.name = name;
    if (!v["dtype"].is_string()) fail(where, ": dtype must be a string");
    try {
      info.dtype = safetensors_dtype(v["dtype"].get<std::string>());
    } catch (const Error& e) {
      fail(where, ": ", e.what());
    }
    const json& shape = v["shape"];
    if (!shape.is_array()) fail(where, ": shape must be an array of integers");
    for (const json& d : shape) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) fail(where, ": shape must hold non-negative integers");
      info.shape.push_back(d.get<int64_t>());
    }
    const json& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      fail(where, ": data_offsets must be [begin, end] with non-negative integers");
    const uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    if (b > e) fail(where, ": data_offsets begin ", b, " > end ", e);
    if (e > data_size)
      fail(where, ": data_offsets [", b, ", ", e, "] run past the end of the data (", data_size,
           " bytes): file truncated?");
    const std::size_t nbytes = tensor_nbytes_or_fail(info, where);
    if (e - b != nbytes)
      fail(where, ": ", e - b, " bytes stored, but dtype ", v["dtype"].get<std::string>(), " and shape ",
           shape_string(info.shape), " need ", nbytes);
    ranges.push_back({static_cast<std::size_t>(b), static_cast<std::size_t>(e), name});
    index_[name] = Entry{infos_.size(), data_start + b, data_start + e};
    infos_.push_back(std::move(info));
  }
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (std::size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].begin < ranges[i - 1].end)
      fail(file, ": tensors '", ranges[i - 1].name, "' and '", ranges[i].name, "' overlap in the data section");
  }
  // Present tensors in data order, as they were written.
  std::vector<TensorInfo> ordered;
  ordered.reserve(infos_.size());
  for (const Range& r : ranges) ordered.push_back(infos_[index_[r.name].info]);
  infos_ = std::move(ordered);
  for (std::size_t i = 0; i < infos_.size(); ++i) index_[infos_[i].name].info = i;
}

const TensorInfo& SafetensorsReader::info(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) fail(path().string(), ": no tensor named '", name, "'");
  return infos_[it->second.info];
}

at::Tensor SafetensorsReader::load(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) fail(path().string(), ": no tensor named '", name, "'");
  const TensorInfo& info = infos_[it->second.info];
  const auto opts = at::TensorOptions().dtype(info.dtype).device(at::kCPU);
  if (it->second.end == it->second.begin) return at::empty(info.shape, opts);
  uint8_t* ptr = file_->mutable_data() + it->second.begin;
  auto keep = file_;
  at::Tensor t = at::from_blob(ptr, info.shape, [keep](void*) {}, opts);
  if (reinterpret_cast<uintptr_t>(ptr) % c10::elementSize(info.dtype) != 0) return t.clone();
  return t;
}

void SafetensorsReader::release(const std::string& name) const {
  auto it = index_.find(name);
  if (it != index_.end()) file_->release(it->second.begin, it->second.end - it->second.begin);
}

void write_safetensors(const std::filesystem::path& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<at::Tensor> data;
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::size_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name == "__metadata__") fail(path.string(), ": a tensor cannot be named __metadata__");
    if (header.contains(name)) fail(path.string(), ": duplicate tensor name '", name, "'");
    at::Tensor t = tensor.detach().to(at::kCPU).contiguous();
    std::size_t nbytes = t.numel() * t.element_size();
    header[name] = {{"dtype", safetensors_dtype_name(t.scalar_type())},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    data.push_back(std::move(t));
  }
  std::string hdr = header.dump();
  hdr.append((8 - hdr.size() % 8) % 8, ' ');
  write_file_atomic(path, [&](int fd) {
    uint8_t len[8];
    uint64_t n = hdr.size();
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
    write_all(fd, len, 8, path);
    write_all(fd, hdr.data(), hdr.size(), path);
    for (const at::Tensor& t : data) write_all(fd, t.data_ptr(), t.numel() * t.element_size(), path);
  });
}

void write_safetensors_streamed(const std::filesystem::path& path, const std::vector<TensorInfo>& infos,
                                const MakeTensor& make, const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::size_t offset = 0;
  for (const TensorInfo& info : infos) {
    if (info.name == "__metadata__") fail(path.string(), ": a tensor cannot be named __metadata__");
    if (header.contains(info.name)) fail(path.string(), ": duplicate tensor name '", info.name, "'");
    const std::size_t nbytes = tensor_nbytes_or_fail(info, path.string() + ": tensor '" + info.name + "'");
    header[info.name] = {{"dtype", safetensors_dtype_name(info.dtype)},
                         {"shape", info.shape},
                         {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string hdr = header.dump();
  hdr.append((8 - hdr.size() % 8) % 8, ' ');
  write_file_atomic(path, [&](int fd) {
    uint8_t len[8];
    uint64_t n = hdr.size();
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
    write_all(fd, len, 8, path);
    write_all(fd, hdr.data(), hdr.size(), path);
    for (const TensorInfo& info : infos) {
      const at::Tensor t = make(info).detach().to(at::kCPU).contiguous();
      if (t.scalar_type() != info.dtype || t.sizes().vec() != info.shape)
        fail(path.string(), ": tensor '", info.name, "' was announced as ", safetensors_dtype_name(info.dtype), " ",
             shape_string(info.shape), " but came as ", safetensors_dtype_name(t.scalar_type()), " ",
             shape_string(t.sizes().vec()));
      write_all(fd, t.data_ptr(), t.numel() * t.element_size(), path);
    }
  });
}

}  // namespace m2sa
