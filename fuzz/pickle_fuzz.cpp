// Fuzz target: raw bytes through the data-only unpickler (every protocol, no globals allowed), then the result
// walked the way consumers walk it (recursively), which the reader's depth and cycle limits must keep safe.
#include <string_view>

#include "fuzz_target.h"
#include "m2sa/io/pickle.h"

namespace {

int64_t walk_pickle_value(const m2sa::PyValue& v) {
  using Kind = m2sa::PyValue::Kind;
  int64_t n = 1;
  switch (v.kind()) {
    case Kind::List:
    case Kind::Tuple:
    case Kind::Set:
      for (const auto& x : v.items()) n += walk_pickle_value(x);
      break;
    case Kind::Dict:
      for (const auto& [k, x] : v.dict_items()) n += walk_pickle_value(k) + walk_pickle_value(x);
      break;
    case Kind::Str:
    case Kind::Bytes:
      n += static_cast<int64_t>(v.as_str().size());
      break;
    default:
      break;
  }
  return n;
}

}  // namespace

M2SA_FUZZ_TARGET(pickle) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  return m2sa::fuzz::swallow_error([&] {
    const m2sa::PyValue root = m2sa::unpickle(bytes, m2sa::PickleHooks{}, "fuzz.pkl");
    (void)walk_pickle_value(root);
  });
}
