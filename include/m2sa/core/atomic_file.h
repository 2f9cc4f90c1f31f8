#pragma once
// Atomic writes: data goes to a temp file in the same directory, is flushed to disk, then renamed over the
// target. A reader (or a resumed run after SIGKILL) sees the old file or the new one, never half of one.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

namespace m2sa {

// Writes `bytes` to `path` atomically.
void write_file_atomic(const std::filesystem::path& path, std::string_view bytes);

// Streams into a temp file through `writer(fd)`; then fsync + rename. The writer writes with write_all().
void write_file_atomic(const std::filesystem::path& path, const std::function<void(int fd)>& writer);

// Writes all of `data` to `fd` (retrying short writes); errors name `path`.
void write_all(int fd, const void* data, std::size_t size, const std::filesystem::path& path);

// Renames a finished temp directory over `dir` atomically (the old directory, if any, is removed after).
void replace_directory(const std::filesystem::path& tmp_dir, const std::filesystem::path& dir);

}  // namespace m2sa
