#pragma once
// A data-only Python pickle reader (protocols 0-5, the opcodes that plain data and torch.save use).
// It never executes anything: GLOBAL / STACK_GLOBAL produce a `Global` value only if the caller's policy
// allows that name, and REDUCE / BUILD / persistent ids are handed to caller hooks. Used for torch.save zip
// checkpoints (`data.pkl`) and for the RefCOCO `refs(*).p` annotation pickles.
//
// Pickles are untrusted input, so the reader bounds what a short file can ask for:
// - values are shared, never copied: a memo GET or DUP of a string, list or dict refers to the same object (as
//   in Python), so repeating GET costs one reference, not one more copy of the value;
// - a container that holds itself, directly or through others, is refused (data has no cycles, and every
//   consumer walks values recursively);
// - nesting deeper than kMaxPickleDepth containers is refused;
// - freeing a value takes constant stack however deep it is.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace m2sa {

// The deepest nesting of containers (list, tuple, set, dict; keys count too) a pickle may hold. State dicts nest
// a handful deep and the RefCOCO refs five; 100 leaves room for any data while keeping the recursive walks of
// the consumers far from the end of the stack.
inline constexpr int kMaxPickleDepth = 100;

class PyValue {
 public:
  enum class Kind { None, Bool, Int, Float, Str, Bytes, List, Tuple, Dict, Set, Global, Tensor, Opaque };
  using List = std::vector<PyValue>;
  using Dict = std::vector<std::pair<PyValue, PyValue>>;  // insertion order, like a Python dict

  PyValue() = default;
  static PyValue none() { return PyValue(); }
  static PyValue boolean(bool b);
  static PyValue integer(int64_t i);
  static PyValue floating(double f);
  static PyValue str(std::string s);
  static PyValue bytes(std::string s);
  static PyValue list(List items = {});
  static PyValue tuple(List items = {});
  static PyValue dict();
  static PyValue set();
  static PyValue global(std::string qualified_name);  // "module.name"
  static PyValue tensor(at::Tensor t);
  // A value the hooks made that has no Python meaning here (e.g. a storage); `tag` says what it is and `id`
  // indexes the hook's own table.
  static PyValue opaque(std::string tag, int64_t id = 0);

  Kind kind() const { return kind_; }
  const char* kind_name() const;
  bool is_none() const { return kind_ == Kind::None; }
  bool is_str() const { return kind_ == Kind::Str || kind_ == Kind::Bytes; }

  // Typed access; each throws m2sa::Error naming the expected and the actual kind.
  bool as_bool() const;
  int64_t as_int() const;
  double as_float() const;  // accepts Int too
  const std::string& as_str() const;  // Str or Bytes
  const List& items() const;  // List or Tuple
  List& mutable_items() const;
  const Dict& dict_items() const;
  Dict& mutable_dict_items() const;
  const std::string& global_name() const;
  const at::Tensor& as_tensor() const;
  const std::string& tag() const { return text(); }
  int64_t opaque_id() const { return int_; }

  // Dict lookup by string key; nullptr if absent. Throws if this is not a Dict.
  const PyValue* find(std::string_view key) const;
  const PyValue& at(std::string_view key) const;  // throws naming the key

  // The shared object behind a list, tuple, set or dict (copies of a PyValue share it); nullptr for the rest.
  const void* container_id() const;

 private:
  Kind kind_ = Kind::None;
  int64_t int_ = 0;
  double float_ = 0;
  const std::string& text() const;

  std::shared_ptr<const std::string> text_;  // shared: copies of a big string cost one reference
  std::shared_ptr<List> list_;
  std::shared_ptr<Dict> dict_;
  at::Tensor tensor_;
};

struct PickleHooks {
  // Whether GLOBAL "module.name" may appear at all. Anything refused stops the load with an error naming it.
  std::function<bool(const std::string&)> allow_global = [](const std::string&) { return false; };
  // REDUCE of an allowed global with an argument tuple.
  std::function<PyValue(const std::string& global, const PyValue& args)> reduce;
  // BUILD: object state applied to an object; return the built object.
  std::function<PyValue(const PyValue& object, const PyValue& state)> build;
  // BINPERSID / PERSID.
  std::function<PyValue(const PyValue& pid)> persistent_load;
};

// Unpickles `data`. `source` names the file in error messages.
PyValue unpickle(std::string_view data, const PickleHooks& hooks, const std::string& source);

}  // namespace m2sa
