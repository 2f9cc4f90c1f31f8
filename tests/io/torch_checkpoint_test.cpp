#include "m2sa/io/torch_checkpoint.h"

#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>

#include "m2sa/core/error.h"
#include "m2sa/io/pickle.h"
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
  Pickle& int8(int64_t v) {  // LONG1 with 8 bytes: any int64
    b += '\x8a';
    b += '\x08';
    for (int i = 0; i < 8; ++i) b += static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff);
    return *this;
  }
  Pickle& put(int i) { b += 'q'; b += static_cast<char>(i); return *this; }
  Pickle& get(int i) { b += 'h'; b += static_cast<char>(i); return *this; }
  Pickle& repeat(char c, std::size_t n) { b.append(n, c); return *this; }
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

// {'w': tensor} as above with any offset, size, stride and storage numel (int64 each).
std::string tensor_view_pickle(int64_t offset, const std::vector<int64_t>& size, const std::vector<int64_t>& stride,
                               int64_t numel) {
  Pickle p;
  p.proto2().op('}').unicode("w").global("torch._utils", "_rebuild_tensor_v2").op('(');
  p.op('(').unicode("storage").global("torch", "FloatStorage").unicode("0").unicode("cpu").int8(numel).op('t').op('Q');
  p.int8(offset).op('(');
  for (int64_t s : size) p.int8(s);
  p.op('t').op('(');
  for (int64_t s : stride) p.int8(s);
  p.op('t').op('\x89');
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

// ---- untrusted pickles and archives (issue 18): refused with an error naming the file, never a crash ----

std::string unpickle_error(const std::string& bytes) {
  return test::m2sa_error_of([&] { unpickle(bytes, PickleHooks{}, "crafted.pkl"); });
}

TEST(PickleLimits, SelfContainingListIsRefused) {
  // l = []; l.append(l): EMPTY_LIST BINPUT 0 BINGET 0 APPEND STOP.
  Pickle p;
  p.proto2().op(']').put(0).get(0).op('a').op('.');
  const std::string err = unpickle_error(p.b);
  EXPECT_NE(err.find("contains itself"), std::string::npos) << err;
  EXPECT_NE(err.find("crafted.pkl"), std::string::npos) << err;
}

TEST(PickleLimits, DeepNestingIsRefused) {
  // [[[[...]]]] a million deep; freeing it used to recurse once per level and overflow the stack.
  const std::size_t n = 1000000;
  Pickle lists;
  lists.proto2().repeat(']', n).repeat('a', n - 1).op('.');
  std::string err = unpickle_error(lists.b);
  EXPECT_NE(err.find("more than " + std::to_string(kMaxPickleDepth) + " deep"), std::string::npos) << err;
  // The same with tuples built from MARKs.
  Pickle tuples;
  tuples.proto2().repeat('(', n).repeat('t', n).op('.');
  err = unpickle_error(tuples.b);
  EXPECT_NE(err.find("deep"), std::string::npos) << err;
  // At the limit it loads.
  Pickle ok;
  ok.proto2().repeat(']', kMaxPickleDepth).repeat('a', kMaxPickleDepth - 1).op('.');
  EXPECT_EQ(unpickle(ok.b, PickleHooks{}, "ok.pkl").kind(), PyValue::Kind::List);
}

TEST(PickleLimits, DeepValueIsFreedWithoutRecursion) {
  PyValue v = PyValue::list();
  for (int i = 0; i < 1000000; ++i) v = PyValue::list({v});
  v = PyValue::none();  // frees a million nested lists
  SUCCEED();
}

TEST(PickleLimits, MemoGetSharesTheValue) {
  // s = 'x' * 100000; [s] * 1000 through BINGET: one string, not a thousand copies of it.
  Pickle p;
  p.proto2().unicode(std::string(100000, 'x')).put(1).op('0').op('(');
  for (int i = 0; i < 1000; ++i) p.get(1);
  p.op('l').op('.');
  PyValue list = unpickle(p.b, PickleHooks{}, "shared.pkl");
  ASSERT_EQ(list.items().size(), 1000u);
  for (const PyValue& s : list.items()) ASSERT_EQ(s.as_str().data(), list.items()[0].as_str().data());
}

TEST(TorchCheckpoint, RefusesSelfContainingDict) {
  // d = {}; d['a'] = d. Flattening the state dict used to recurse until the stack overflowed.
  test::TempDir dir;
  Pickle p;
  p.proto2().op('}').put(0).unicode("a").get(0).op('s').op('.');
  write_zip(dir / "cycle.pth", p.b);
  expect_load_error(dir / "cycle.pth", "contains itself");
}

TEST(TorchCheckpoint, RefusesADictReachedTwice) {
  // d[i] = {'a': d[i-1], 'b': d[i-1]}: 21 dicts, 2^20 paths when flattened.
  test::TempDir dir;
  Pickle p;
  p.proto2().op('}').put(0);
  for (int i = 1; i <= 20; ++i)
    p.op('0').op('}').put(i).op('(').unicode("a").get(i - 1).unicode("b").get(i - 1).op('u');
  p.op('.');
  write_zip(dir / "dag.pth", p.b);
  expect_load_error(dir / "dag.pth", "appears twice");
}

TEST(TorchCheckpoint, RefusesOverflowingViews) {
  test::TempDir dir;
  const std::string data(16, '\0');
  const int64_t big = int64_t(1) << 62;
  // (3 - 1) * 2^62 wraps to a negative extent, which passed the bounds check.
  write_zip(dir / "wrap.pth", tensor_view_pickle(0, {3, big}, {big, 1}, 4), {{"data/0", data}});
  expect_load_error(dir / "wrap.pth", "overflow");
  // Offset plus extent past int64.
  write_zip(dir / "offset.pth", tensor_view_pickle(INT64_MAX, {2}, {1}, 4), {{"data/0", data}});
  expect_load_error(dir / "offset.pth", "overflow");
  // A negative storage size, and one whose byte count overflows.
  write_zip(dir / "negnumel.pth", tensor_view_pickle(0, {0}, {1}, -1), {{"data/0", data}});
  expect_load_error(dir / "negnumel.pth", "negative or overflowing size");
  write_zip(dir / "hugenumel.pth", tensor_view_pickle(0, {1}, {1}, INT64_MAX / 2), {{"data/0", data}});
  expect_load_error(dir / "hugenumel.pth", "negative or overflowing size");
}

// Sets the method and the uncompressed size of every central-directory record whose name ends in `suffix`.
void patch_zip_record(const std::filesystem::path& path, const std::string& suffix, uint16_t method, uint32_t size) {
  std::string z = test::read_bytes(path);
  std::size_t patched = 0;
  for (std::size_t pos = z.find("PK\x01\x02"); pos != std::string::npos; pos = z.find("PK\x01\x02", pos + 4)) {
    const std::size_t name_len = static_cast<uint8_t>(z[pos + 28]) | static_cast<uint8_t>(z[pos + 29]) << 8;
    const std::string name = z.substr(pos + 46, name_len);
    if (name.size() < suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
    z[pos + 10] = static_cast<char>(method & 0xff);
    z[pos + 11] = static_cast<char>(method >> 8);
    for (int i = 0; i < 4; ++i) z[pos + 24 + i] = static_cast<char>((size >> (8 * i)) & 0xff);
    ++patched;
  }
  ASSERT_GT(patched, 0u) << suffix;
  test::write_bytes(path, z);
}

TEST(TorchCheckpoint, RefusesRecordsLargerThanTheFile) {
  // A deflated record that claims 4 GB: LibTorch's reader allocates the claimed size before inflating.
  test::TempDir dir;
  for (const std::string record : {"data.pkl", "version", "data/0"}) {
    const auto path = dir / "huge.pth";
    write_zip(path, tensor_dict_pickle(4, 4), {{"data/0", std::string(16, '\0')}});
    patch_zip_record(path, record, 8, 0xFFFFFFF0u);
    expect_load_error(path, "more than the whole file");
  }
}

}  // namespace
}  // namespace m2sa
