#pragma once
// The one exception type of m2sa. Every error names what it was about (a file, a key, a field) and what was
// expected; layers that know more context wrap it with `with_context` on the way up.
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace m2sa {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {
template <typename... Args>
std::string concat(Args&&... args) {
  std::ostringstream out;
  (out << ... << std::forward<Args>(args));
  return out.str();
}
}  // namespace detail

// Throws m2sa::Error with the arguments streamed into one message.
template <typename... Args>
[[noreturn]] void fail(Args&&... args) {
  throw Error(detail::concat(std::forward<Args>(args)...));
}

// Runs `fn`; any exception leaving it is rethrown as m2sa::Error prefixed with "context: ".
template <typename Fn>
auto with_context(const std::string& context, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const std::exception& e) {
    throw Error(context + ": " + e.what());
  }
}

}  // namespace m2sa

#define M2SA_CHECK(cond, ...)            \
  do {                                   \
    if (!(cond)) ::m2sa::fail(__VA_ARGS__); \
  } while (0)
