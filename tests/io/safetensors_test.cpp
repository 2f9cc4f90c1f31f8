#include "m2sa/io/safetensors.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstring>

#include "m2sa/core/error.h"
#include "test_util.h"

namespace m2sa {
namespace {

using test::TempDir;

std::string header_file(const std::string& header_json, const std::string& data) {
  std::string h = header_json;
  uint64_t n = h.size();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + h + data;
}

void expect_error(const std::filesystem::path& p, const std::string& needle) {
  try {
    SafetensorsReader r(p);
    FAIL() << "expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    EXPECT_NE(msg.find(p.filename().string()), std::string::npos) << "message must name the file: " << msg;
  }
}

TEST(Safetensors, RoundTripAllDtypes) {
  TempDir dir;
  NamedTensors in = {
      {"f32", at::randn({3, 4})},
      {"bf16", at::randn({5}).to(at::kBFloat16)},
      {"f16", at::randn({2, 2}).to(at::kHalf)},
      {"i64", at::arange(7, at::kLong)},
      {"i32", at::arange(3, at::kInt)},
      {"u8", at::arange(9, at::kByte).view({3, 3})},
      {"bool", at::tensor({1, 0, 1}).to(at::kBool)},
      {"empty", at::empty({1, 0, 4})},
      {"scalar", at::scalar_tensor(2.5)},
  };
  write_safetensors(dir / "a.safetensors", in, {{"k", "v"}});
  SafetensorsReader r(dir / "a.safetensors");
  ASSERT_EQ(r.tensors().size(), in.size());
  EXPECT_EQ(r.metadata().at("k"), "v");
  for (const auto& [name, t] : in) {
    at::Tensor got = r.load(name);
    EXPECT_EQ(got.scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ(got.sizes(), t.sizes()) << name;
    EXPECT_TRUE(at::equal(got, t)) << name;
  }
  // Written tensors appear in data order, i.e. the order given.
  EXPECT_EQ(r.tensors().front().name, "f32");
}

TEST(Safetensors, NoTempFileLeftBehind) {
  TempDir dir;
  write_safetensors(dir / "x.safetensors", {{"a", at::ones({2})}});
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.path())) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1);
}

TEST(Safetensors, BadInputsGiveClearErrors) {
  TempDir dir;
  const std::string good_data(16, '\0');
  auto put = [&](const std::string& name, const std::string& bytes) {
    test::write_bytes(dir / name, bytes);
    return dir / name;
  };
  expect_error(put("short.safetensors", "abc"), "shorter than the 8-byte header");
  {
    std::string b = header_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", good_data);
    b[0] = static_cast<char>(0xff);
    b[1] = static_cast<char>(0xff);
    expect_error(put("biglen.safetensors", b), "larger than the file");
  }
  expect_error(put("notjson.safetensors", header_file("{not json", good_data)), "not valid JSON");
  expect_error(put("past.safetensors", header_file(R"({"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}})", good_data)),
               "past the end");
  expect_error(put("overlap.safetensors",
                   header_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                               good_data)),
               "overlap");
  expect_error(put("dtype.safetensors", header_file(R"({"a":{"dtype":"Q4","shape":[4],"data_offsets":[0,16]}})", good_data)),
               "unknown safetensors dtype");
  expect_error(put("count.safetensors", header_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", good_data)),
               "need 12");
  expect_error(put("neg.safetensors", header_file(R"({"a":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})", good_data)),
               "non-negative");
  expect_error(put("order.safetensors", header_file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", good_data)),
               "begin 8 > end 0");
  expect_error(put("noshape.safetensors", header_file(R"({"a":{"dtype":"F32"}})", good_data)), "dtype, shape and data_offsets");
  // A real file cut short.
  write_safetensors(dir / "full.safetensors", {{"w", at::randn({64})}});
  std::string full = test::read_bytes(dir / "full.safetensors");
  expect_error(put("trunc.safetensors", full.substr(0, full.size() - 10)), "past the end");
}

TEST(Safetensors, MissingFileNamesIt) {
  try {
    SafetensorsReader r("/nonexistent/dir/model.safetensors");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/model.safetensors"), std::string::npos);
  }
}

}  // namespace
}  // namespace m2sa
