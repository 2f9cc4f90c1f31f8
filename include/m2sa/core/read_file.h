#pragma once
#include <filesystem>
#include <string>

namespace m2sa {

// The whole file as bytes; an m2sa::Error names the file when it does not exist or cannot be opened or read.
std::string read_file(const std::filesystem::path& path);

}  // namespace m2sa
