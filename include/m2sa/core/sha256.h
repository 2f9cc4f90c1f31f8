#pragma once
// SHA-256 (FIPS 180-4) of a byte buffer, as a lowercase hex string: golden-data checks (the preprocessing
// fixtures store the sha256 of uint8 image buffers) and checkpoint fingerprints, with no extra dependency.
#include <cstddef>
#include <string>
#include <string_view>

namespace m2sa {

std::string sha256_hex(const void* data, std::size_t size);
inline std::string sha256_hex(std::string_view bytes) { return sha256_hex(bytes.data(), bytes.size()); }

}  // namespace m2sa
