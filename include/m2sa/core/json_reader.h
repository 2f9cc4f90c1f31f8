#pragma once
// Strict reading of JSON configs: every field is looked up by name, a missing required field or a field that
// nobody read is an error naming the field and the file ("configs/tiny.json: sam.image_encoder.depth: ...").
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "m2sa/core/error.h"

namespace m2sa {

using json = nlohmann::json;

// The value of an integral JSON field: a JSON integer (nlohmann would turn 4096.7 into 4096, true into 1 and -1
// into 2^64-1 for an unsigned type) within [lo, hi]. Errors name `where` (file: field) and the range.
int64_t json_int(const json& v, const std::string& where, int64_t lo = std::numeric_limits<int64_t>::min(),
                 int64_t hi = std::numeric_limits<int64_t>::max());
uint64_t json_uint(const json& v, const std::string& where, uint64_t hi = std::numeric_limits<uint64_t>::max());
// json_int / json_uint over the range of T.
template <typename T>
T json_integer(const json& v, const std::string& where) {
  static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>);
  if constexpr (std::is_unsigned_v<T>) return static_cast<T>(json_uint(v, where, std::numeric_limits<T>::max()));
  else
    return static_cast<T>(json_int(v, where, std::numeric_limits<T>::min(), std::numeric_limits<T>::max()));
}

// Parses a JSON file; errors name the file (and the parser's position).
json read_json_file(const std::filesystem::path& path);

// Writes JSON atomically (temp file + rename), pretty-printed with `indent` (-1: compact).
void write_json_file(const std::filesystem::path& path, const json& value, int indent = 2);

class JsonReader {
 public:
  // `file` is the source file for messages; `where` the dotted path of this object inside it.
  JsonReader(const json& object, std::string file, std::string where = "");

  bool has(const std::string& key) const;

  // Integral T: a JSON integer within T's range (json_integer); floating T: a JSON number; bool: true or false.
  template <typename T>
  T get(const std::string& key) const {
    const json& v = at(key);
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
      return json_integer<T>(v, location(key));
    } else if constexpr (std::is_floating_point_v<T>) {
      if (!v.is_number()) fail(location(key), ": expected a number, got ", v.dump());
    } else if constexpr (std::is_same_v<T, bool>) {
      if (!v.is_boolean()) fail(location(key), ": expected true or false, got ", v.dump());
    }
    try {
      return v.get<T>();
    } catch (const std::exception& e) {
      fail(location(key), ": expected ", type_name<T>(), ", got ", v.dump(), " (", e.what(), ")");
    }
  }

  template <typename T>
  T get_or(const std::string& key, T fallback) const {
    return has(key) ? get<T>(key) : std::move(fallback);
  }

  template <typename T>
  std::optional<T> get_optional(const std::string& key) const {
    if (!has(key) || (*object_)[key].is_null()) {
      used_->insert(key);
      return std::nullopt;
    }
    return get<T>(key);
  }

  // A nested object, read with the same strictness.
  JsonReader child(const std::string& key) const;
  // Raw access (marks the key as read).
  const json& raw(const std::string& key) const { return at(key); }
  const json& object() const { return *object_; }

  // Throws if the object has fields that were never read. Call once everything is read.
  void finish() const;

  std::string location(const std::string& key) const;
  const std::string& file() const { return file_; }

 private:
  const json& at(const std::string& key) const;
  template <typename T>
  static const char* type_name() {
    if constexpr (std::is_same_v<T, bool>) return "a boolean";
    else if constexpr (std::is_integral_v<T>) return "an integer";
    else if constexpr (std::is_floating_point_v<T>) return "a number";
    else if constexpr (std::is_same_v<T, std::string>) return "a string";
    else return "a value of another type";
  }

  const json* object_;
  std::string file_;
  std::string where_;
  std::shared_ptr<std::set<std::string>> used_;
};

}  // namespace m2sa
