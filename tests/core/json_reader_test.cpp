#include "m2sa/core/json_reader.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace m2sa
