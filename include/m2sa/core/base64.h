#pragma once
#include <string>
#include <string_view>

namespace m2sa {

// Standard base64 (RFC 4648 section 4) with '=' padding, for data: URIs.
std::string base64_encode(std::string_view bytes);

}  // namespace m2sa
