#include "m2sa/core/json_reader.h"

#include <gtest/gtest.h>

#include <fstream>

#include "m2sa/models/llama/llama_config.h"
#include "m2sa/models/sam/sam_config.h"
#include "test_util.h"

namespace m2sa {
namespace {

TEST(JsonReader, StrictFields) {
  json j = json::parse(R"({"a": 1, "b": {"c": "x"}, "typo": 2})");
  JsonReader r(j, "cfg.json");
  EXPECT_EQ(r.get<int>("a"), 1);
  JsonReader b = r.child("b");
  EXPECT_EQ(b.get<std::string>("c"), "x");
  b.finish();
  try {
    r.finish();
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cfg.json: top level: unknown field(s): typo"), std::string::npos) << e.what();
  }
  try {
    r.get<int>("missing");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cfg.json: missing: required field is missing"), std::string::npos) << e.what();
  }
  try {
    b.get<int>("c");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cfg.json: b.c: expected an integer"), std::string::npos) << e.what();
  }
}

TEST(JsonReader, IntegralFieldsAreJsonIntegersInRange) {
  json j = json::parse(R"({"frac": 4096.7, "flag": true, "neg": -1, "big": 3000000000, "huge": 18446744073709551615,
                           "float_int": 4096.0, "ok": 4096, "str": "7"})");
  JsonReader r(j, "cfg.json");
  auto err = [&](auto fn) { return test::m2sa_error_of(fn); };
  EXPECT_NE(err([&] { r.get<int64_t>("frac"); }).find("cfg.json: frac: expected an integer, got 4096.7"), std::string::npos);
  EXPECT_NE(err([&] { r.get<int64_t>("float_int"); }).find("cfg.json: float_int: expected an integer"), std::string::npos);
  EXPECT_NE(err([&] { r.get<int64_t>("flag"); }).find("cfg.json: flag: expected an integer, got true"), std::string::npos);
  EXPECT_NE(err([&] { r.get<int>("str"); }).find("cfg.json: str: expected an integer"), std::string::npos);
  // A seed of -1 wrapped to 2^64-1.
  EXPECT_NE(err([&] { r.get<uint64_t>("neg"); }).find("cfg.json: neg: -1 is out of range (expected an integer in [0, "),
            std::string::npos)
      << err([&] { r.get<uint64_t>("neg"); });
  EXPECT_NE(err([&] { r.get_or<uint64_t>("neg", 0); }).find("out of range"), std::string::npos);
  EXPECT_NE(err([&] { r.get<int>("big"); }).find("cfg.json: big: 3000000000 is out of range"), std::string::npos);
  EXPECT_NE(err([&] { r.get<int64_t>("huge"); }).find("out of range"), std::string::npos);
  EXPECT_EQ(r.get<uint64_t>("huge"), UINT64_MAX);
  EXPECT_EQ(r.get<int64_t>("big"), 3000000000);
  EXPECT_EQ(r.get<int64_t>("neg"), -1);
  EXPECT_EQ(r.get<int>("ok"), 4096);
  EXPECT_EQ(r.get<double>("ok"), 4096.0);
  EXPECT_NE(err([&] { r.get<double>("flag"); }).find("cfg.json: flag: expected a number, got true"), std::string::npos);
  EXPECT_NE(err([&] { r.get<bool>("ok"); }).find("cfg.json: ok: expected true or false"), std::string::npos);
  // The free helpers take an explicit range.
  EXPECT_NE(err([&] { json_int(j["ok"], "f.json: n", 0, 100); }).find("f.json: n: 4096 is out of range (expected an integer in [0, 100])"),
            std::string::npos);
  EXPECT_EQ(json_int(j["neg"], "f.json: n", -1, 0), -1);
}

TEST(JsonReader, ConfigParsersRefuseNonIntegers) {
  const json cfg = json::parse(test::read_bytes(test::repo_root() / "configs" / "tiny.json"));
  // LLaMA (read through JsonReader::get): 4096.7 used to become 4096.
  json llama = cfg.at("llama");
  llama["max_position_embeddings"] = 4096.7;
  std::string e = test::m2sa_error_of([&] { llama::LlamaConfig::from_json(JsonReader(llama, "tiny.json", "llama")); });
  EXPECT_NE(e.find("tiny.json: llama.max_position_embeddings: expected an integer, got 4096.7"), std::string::npos) << e;
  // SAM (its own integer reader): 2^64-1 used to wrap to -1.
  json sam = cfg.at("sam");
  sam["image_encoder"]["depth"] = 18446744073709551615ull;
  e = test::m2sa_error_of([&] { sam::SamConfig::from_json(JsonReader(sam, "tiny.json", "sam")); });
  EXPECT_NE(e.find("sam.image_encoder.depth: 18446744073709551615 is out of range"), std::string::npos) << e;
}

// nlohmann throws out_of_range, not parse_error, for a number beyond a double; that too is an m2sa::Error naming
// the file (it once escaped read_json_file as a bare nlohmann exception; fuzz/regressions/model_config/).
TEST(JsonReader, NumberOverflowIsAnErrorNamingTheFile) {
  test::TempDir dir;
  const auto path = dir / "big.json";
  std::ofstream(path) << R"({"lr": 2e999})";
  try {
    (void)read_json_file(path);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("big.json: invalid JSON"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace m2sa
