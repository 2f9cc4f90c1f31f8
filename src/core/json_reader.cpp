#include "m2sa/core/json_reader.h"

#include <fstream>
#include <sstream>

#include "m2sa/core/atomic_file.h"

namespace m2sa {

int64_t json_int(const json& v, const std::string& where, int64_t lo, int64_t hi) {
  if (!v.is_number_integer()) fail(where, ": expected an integer, got ", v.dump());
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi))
    fail(where, ": ", v.dump(), " is out of range (expected an integer in [", lo, ", ", hi, "])");
  const int64_t i = v.is_number_unsigned() ? static_cast<int64_t>(v.get<uint64_t>()) : v.get<int64_t>();
  if (i < lo || i > hi) fail(where, ": ", v.dump(), " is out of range (expected an integer in [", lo, ", ", hi, "])");
  return i;
}

uint64_t json_uint(const json& v, const std::string& where, uint64_t hi) {
  if (!v.is_number_integer()) fail(where, ": expected an integer, got ", v.dump());
  if (!v.is_number_unsigned() && v.get<int64_t>() < 0)
    fail(where, ": ", v.dump(), " is out of range (expected an integer in [0, ", hi, "])");
  const uint64_t u = v.get<uint64_t>();
  if (u > hi) fail(where, ": ", v.dump(), " is out of range (expected an integer in [0, ", hi, "])");
  return u;
}

json read_json_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path.string(), ": cannot open JSON file");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    // Not only parse_error: a number too large for a double ("2e999") is out_of_range 406 (found by fuzzing).
    fail(path.string(), ": invalid JSON: ", e.what());
  }
}

void write_json_file(const std::filesystem::path& path, const json& value, int indent) {
  write_file_atomic(path, value.dump(indent) + "\n");
}

JsonReader::JsonReader(const json& object, std::string file, std::string where)
    : object_(&object), file_(std::move(file)), where_(std::move(where)),
      used_(std::make_shared<std::set<std::string>>()) {
  if (!object.is_object()) fail(file_, where_.empty() ? "" : ": ", where_, ": expected a JSON object, got ", object.dump());
}

bool JsonReader::has(const std::string& key) const { return object_->contains(key); }

std::string JsonReader::location(const std::string& key) const {
  return file_ + ": " + (where_.empty() ? key : where_ + "." + key);
}

const json& JsonReader::at(const std::string& key) const {
  auto it = object_->find(key);
  if (it == object_->end()) fail(location(key), ": required field is missing");
  used_->insert(key);
  return *it;
}

JsonReader JsonReader::child(const std::string& key) const {
  const json& v = at(key);
  if (!v.is_object()) fail(location(key), ": expected an object, got ", v.dump());
  return JsonReader(v, file_, where_.empty() ? key : where_ + "." + key);
}

void JsonReader::finish() const {
  std::vector<std::string> unknown;
  for (auto it = object_->begin(); it != object_->end(); ++it)
    if (!used_->count(it.key())) unknown.push_back(it.key());
  if (unknown.empty()) return;
  std::string list;
  for (const auto& k : unknown) list += (list.empty() ? "" : ", ") + k;
  fail(file_, ": ", where_.empty() ? "top level" : where_, ": unknown field(s): ", list);
}

}  // namespace m2sa
