#pragma once
// Private helpers of the dataset readers: typed access to fields of one dataset entry, with BadEntry errors that
// name the file, the entry and the field.
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "m2sa/core/error.h"
#include "m2sa/core/json_reader.h"
#include "m2sa/data/dataset.h"

namespace m2sa::data::detail {

using json = nlohmann::json;

inline std::string type_of(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "an object";
    case json::value_t::array: return "a list";
    case json::value_t::string: return "a string";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number";
    default: return "something else";
  }
}

inline const json& need(const json& obj, const char* key, const std::string& where) {
  if (!obj.is_object()) bad_entry(where, ": expected an object, got ", type_of(obj));
  auto it = obj.find(key);
  if (it == obj.end()) bad_entry(where, ": missing field \"", key, "\"");
  return *it;
}

inline const std::string& need_string(const json& obj, const char* key, const std::string& where) {
  const json& v = need(obj, key, where);
  if (!v.is_string()) bad_entry(where, ": field \"", key, "\" must be a string, got ", type_of(v));
  return v.get_ref<const std::string&>();
}

inline int64_t need_int(const json& obj, const char* key, const std::string& where) {
  const json& v = need(obj, key, where);
  if (!v.is_number_integer()) bad_entry(where, ": field \"", key, "\" must be an integer, got ", type_of(v));
  try {
    return json_int(v, where + ": field \"" + key + "\"");
  } catch (const Error& e) {
    bad_entry(e.what());
  }
}

inline const json& need_array(const json& obj, const char* key, const std::string& where) {
  const json& v = need(obj, key, where);
  if (!v.is_array()) bad_entry(where, ": field \"", key, "\" must be a list, got ", type_of(v));
  return v;
}

// Parses a JSON file; a syntax error names the file (an m2sa::Error: the whole file is unusable).
inline json parse_json_file(const std::filesystem::path& path, const json::parser_callback_t& cb = nullptr) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code ec;
    fail(path.string(), std::filesystem::exists(path, ec) ? ": cannot open" : ": does not exist");
  }
  try {
    return json::parse(in, cb);
  } catch (const json::exception& e) {
    fail(path.string(), ": invalid JSON: ", e.what());
  }
}

// Python str.strip() for ASCII whitespace.
inline std::string py_strip(const std::string& s) {
  const char* ws = " \t\n\r\x0b\x0c";
  const std::size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  const std::size_t e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

// Runs `fn` for one entry; with skip_bad a BadEntry is recorded in `report` (if any) and false is returned.
inline bool guarded(bool skip_bad, SkipReport* report, const std::string& dataset, const std::function<void()>& fn) {
  if (!skip_bad) {
    fn();
    return true;
  }
  try {
    fn();
    return true;
  } catch (const BadEntry& e) {
    if (report) report->add(dataset, e.what());
    return false;
  }
}

}  // namespace m2sa::data::detail
