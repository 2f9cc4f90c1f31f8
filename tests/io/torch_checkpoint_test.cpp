#include "m2sa/io/torch_checkpoint.h"

#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>

#include "m2sa/core/error.h"
#include "m2sa/io/safetensors.h"
#include "m2sa/io/weight_store.h"
#include "test_util.h"

namespace m2sa {
namespace {

TEST(TorchCheckpoint, SamTinyPthEqualsSafetensors) {
  TorchCheckpointReader pth(test::fixture("sam_tiny.pth"));
  SafetensorsReader st(test::fixture("sam_tiny.safetensors"));
  ASSERT_FALSE(pth.tensors().empty());
  std::size_t compared = 0;
  for (const auto& info : pth.tensors()) {
    ASSERT_TRUE(st.contains(info.name)) << info.name;
    at::Tensor a = pth.load(info.name), b = st.load(info.name);
    EXPECT_EQ(a.scalar_type(), b.scalar_type()) << info.name;
    EXPECT_TRUE(at::equal(a, b)) << info.name;
    ++compared;
  }
  // Every weight of the safetensors file (the rest are inputs/outputs) is in the .pth.
  std::size_t weights = 0;
  for (const auto& info : st.tensors())
    if (info.name.rfind("input.", 0) != 0 && info.name.rfind("output.", 0) != 0) ++weights;
  EXPECT_EQ(compared, weights);
}

// Writes a zip in torch.save layout with the given data.pkl and storages.
void write_zip(const std::filesystem::path& path, const std::string& pickle,
               const std::vector<std::pair<std::string, std::string>>& records = {}) {
  caffe2::serialize::PyTorchStreamWriter w(path.string());
  w.writeRecord("data.pkl", pickle.data(), pickle.size());
  for (const auto& [name, bytes] : records) w.writeRecord(name, bytes.data(), bytes.size());
  w.writeRecord("version", "3\n", 2);
  w.writeEndOfFile();
}

void expect_load_error(const std::filesystem::path& p, const std::string& needle) {
  try {
    TorchCheckpointReader r(p);
    for (const auto& t : r.tensors()) r.load(t.name);
    FAIL() << "expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(p.filename().string()), std::string::npos) << e.what();
  }
}

// Builds pickle bytes opcode by opcode (hex escapes in string literals are too easy to get wrong).
struct Pickle {
  std::string b;
  Pickle& op(char c) { b += c; return *this; }
  Pickle& proto2() { b += '\x80'; b += '\x02'; return *this; }
  Pickle& unicode(const std::string& s) {
    b += 'X';
    uint32_t n = static_cast<uint32_t>(s.size());
    for (int i = 0; i < 4; ++i) b += static_cast<char>((n >> (8 * i)) & 0xff);
    b += s;
    return *this;
  }
  Pickle& int1(int v) { b += 'K'; b += static_cast<char>(v); return *this; }
  Pickle& global(const std::string& module, const std::string& name) { b += 'c' + module + '\n' + name + '\n'; return *this; }
};

// {'w': _rebuild_tensor_v2(persistent('storage', FloatStorage, '0', 'cpu', numel), 0, (n,), (1,), False, OrderedDict())}
std::string tensor_dict_pickle(int n_elems, int numel) {
  Pickle p;
  p.proto2().op('}').unicode("w").global("torch._utils", "_rebuild_tensor_v2").op('(');
  p.op('(').unicode("storage").global("torch", "FloatStorage").unicode("0").unicode("cpu").int1(numel).op('t').op('Q');
  p.int1(0).int1(n_elems).op('\x85').int1(1).op('\x85').op('\x89');
  p.global("collections", "OrderedDict").op(')').op('R');
  p.op('t').op('R').op('s').op('.');
  return p.b;
}

TEST(TorchCheckpoint, HandWrittenStateDict) {
  test::TempDir dir;
  std::string data(4 * 4, '\0');
  float vals[4] = {1.f, 2.f, 3.f, 4.f};
  std::memcpy(data.data(), vals, 16);
  write_zip(dir / "ok.pth", tensor_dict_pickle(4, 4), {{"data/0", data}});
  TorchCheckpointReader r(dir / "ok.pth");
  ASSERT_EQ(r.tensors().size(), 1u);
  EXPECT_TRUE(at::equal(r.load("w"), at::tensor({1.f, 2.f, 3.f, 4.f})));
}

TEST(TorchCheckpoint, RefusesCodeExecution) {
  test::TempDir dir;
  // os.system('touch /tmp/pwned') as a protocol-0 pickle.
  write_zip(dir / "evil.pth", "cos\nsystem\n(S'touch /tmp/m2sa_pwned'\ntR.");
  expect_load_error(dir / "evil.pth", "refusing to load global 'os.system'");
  EXPECT_FALSE(std::filesystem::exists("/tmp/m2sa_pwned"));
  Pickle evil;
  evil.proto2().global("builtins", "eval").unicode("1+1").op('\x85').op('R').op('.');
  write_zip(dir / "evil2.pth", evil.b);
  expect_load_error(dir / "evil2.pth", "builtins.eval");
}

TEST(TorchCheckpoint, BadInputsGiveClearErrors) {
  test::TempDir dir;
  // Storage smaller than the view.
  write_zip(dir / "short.pth", tensor_dict_pickle(8, 8), {{"data/0", std::string(16, '\0')}});
  expect_load_error(dir / "short.pth", "holds 16 bytes, expected 32");
  // View past the storage's declared size.
  write_zip(dir / "view.pth", tensor_dict_pickle(8, 4), {{"data/0", std::string(16, '\0')}});
  expect_load_error(dir / "view.pth", "reaches element 7 of a storage of 4");
  // Missing storage record.
  write_zip(dir / "nostorage.pth", tensor_dict_pickle(4, 4));
  expect_load_error(dir / "nostorage.pth", "data/0 is missing");
  // Truncated pickle.
  std::string p = tensor_dict_pickle(4, 4);
  write_zip(dir / "truncpkl.pth", p.substr(0, p.size() / 2), {{"data/0", std::string(16, '\0')}});
  expect_load_error(dir / "truncpkl.pth", "truncated");
  // Truncated zip file.
  std::string full = test::read_bytes(test::fixture("sam_tiny.pth"));
  test::write_bytes(dir / "trunc.pth", full.substr(0, full.size() / 2));
  expect_load_error(dir / "trunc.pth", "trunc.pth");
  // Not a zip at all.
  test::write_bytes(dir / "text.pth", "hello world, not a checkpoint");
  expect_load_error(dir / "text.pth", "not a zip-format");
}

}  // namespace
}  // namespace m2sa
