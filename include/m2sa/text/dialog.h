#pragma once
// A conversation as datasets produce it and the conversation template renders it.
#include <string>
#include <vector>

namespace m2sa {

// One round. `user` carries the "<image>\n" prefix on the first round of an image conversation, exactly as
// the reference datasets write it; `assistant` contains one "[SEG]" per target mask (empty for generation).
struct Turn {
  std::string user;
  std::string assistant;
};

using Dialog = std::vector<Turn>;

}  // namespace m2sa
