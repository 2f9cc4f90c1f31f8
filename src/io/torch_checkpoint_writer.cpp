#include "m2sa/io/torch_checkpoint_writer.h"

#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>

#include <map>
#include <set>
#include <string>

#include "m2sa/core/atomic_file.h"
#include "m2sa/core/error.h"

namespace m2sa {

namespace {

const char* storage_type(c10::ScalarType dtype, const std::string& where) {
  static const std::map<c10::ScalarType, const char*> names = {
      {c10::kFloat, "FloatStorage"}, {c10::kBFloat16, "BFloat16Storage"}, {c10::kHalf, "HalfStorage"},
      {c10::kDouble, "DoubleStorage"}, {c10::kLong, "LongStorage"}, {c10::kInt, "IntStorage"},
      {c10::kBool, "BoolStorage"}, {c10::kByte, "ByteStorage"}};
  auto it = names.find(dtype);
  if (it == names.end()) fail(where, ": no torch storage type for dtype ", c10::toString(dtype));
  return it->second;
}

// Pickle protocol 2, opcode by opcode.
struct PickleOut {
  std::string b;
  void op(char c) { b += c; }
  void global(const std::string& module, const std::string& name) { b += 'c' + module + '\n' + name + '\n'; }
  void str(const std::string& s) {
    b += 'X';
    const uint32_t n = static_cast<uint32_t>(s.size());
    for (int i = 0; i < 4; ++i) b += static_cast<char>((n >> (8 * i)) & 0xff);
    b += s;
  }
  void integer(int64_t v) {  // LONG1 with 8 bytes: any int64
    b += '\x8a';
    b += '\x08';
    for (int i = 0; i < 8; ++i) b += static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff);
  }
  void int_tuple(const std::vector<int64_t>& v) {
    op('(');
    for (int64_t x : v) integer(x);
    op('t');
  }
};

std::string state_dict_pickle(const std::vector<TensorInfo>& infos, const std::string& where) {
  PickleOut p;
  p.op('\x80');
  p.op('\x02');
  p.global("collections", "OrderedDict");
  p.op(')');
  p.op('R');
  p.op('(');
  for (std::size_t i = 0; i < infos.size(); ++i) {
    const TensorInfo& t = infos[i];
    p.str(t.name);
    p.global("torch._utils", "_rebuild_tensor_v2");
    p.op('(');
    p.op('(');  // persistent id ('storage', torch.XStorage, key, 'cpu', numel)
    p.str("storage");
    p.global("torch", storage_type(t.dtype, where + ": tensor '" + t.name + "'"));
    p.str(std::to_string(i));
    p.str("cpu");
    p.integer(t.numel());
    p.op('t');
    p.op('Q');
    p.integer(0);
    p.int_tuple(t.shape);
    std::vector<int64_t> stride(t.shape.size(), 1);
    for (std::size_t d = t.shape.size(); d-- > 1;) stride[d - 1] = stride[d] * t.shape[d];
    p.int_tuple(stride);
    p.op('\x89');  // requires_grad False
    p.global("collections", "OrderedDict");
    p.op(')');
    p.op('R');
    p.op('t');
    p.op('R');
  }
  p.op('u');
  p.op('.');
  return p.b;
}

}  // namespace

void write_torch_checkpoint_streamed(const std::filesystem::path& path, const std::vector<TensorInfo>& infos,
                                     const MakeTensor& make) {
  const std::string where = path.string();
  std::set<std::string> names;
  for (const TensorInfo& t : infos)
    if (!names.insert(t.name).second) fail(where, ": duplicate tensor name '", t.name, "'");
  const std::string pickle = state_dict_pickle(infos, where);
  write_file_atomic(path, [&](int fd) {
    // The writer-function form names the archive "archive", as torch.save does.
    caffe2::serialize::PyTorchStreamWriter w([&](const void* data, std::size_t n) -> std::size_t {
      write_all(fd, data, n, path);
      return n;
    });
    w.writeRecord("data.pkl", pickle.data(), pickle.size());
    w.writeRecord("byteorder", "little", 6);
    for (std::size_t i = 0; i < infos.size(); ++i) {
      const TensorInfo& info = infos[i];
      const at::Tensor t = make(info).detach().to(at::kCPU).contiguous();
      if (t.scalar_type() != info.dtype || t.sizes().vec() != info.shape)
        fail(where, ": tensor '", info.name, "' was announced as ", c10::toString(info.dtype), " ",
             shape_string(info.shape), " but came as ", c10::toString(t.scalar_type()), " ",
             shape_string(t.sizes().vec()));
      w.writeRecord("data/" + std::to_string(i), t.data_ptr(), t.numel() * t.element_size());
    }
    w.writeEndOfFile();
  });
}

}  // namespace m2sa
