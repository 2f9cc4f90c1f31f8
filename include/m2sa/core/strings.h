#pragma once
// Small string helpers shared across layers (one definition, so that sources compiled together in a unity batch
// do not carry clashing copies).
#include <string>
#include <string_view>

namespace m2sa {

// Every occurrence of `from` (non-empty; an empty `from` returns `s` unchanged) replaced by `to`, left to right,
// without rescanning the replacement.
std::string replace_all(std::string s, std::string_view from, std::string_view to);

inline bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

inline bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace m2sa
