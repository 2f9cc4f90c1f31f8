#include "m2sa/core/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "m2sa/core/error.h"

namespace m2sa {
namespace fs = std::filesystem;

namespace {
fs::path temp_name(const fs::path& path) {
  static std::atomic<unsigned> counter{0};
  return path.parent_path() /
         ("." + path.filename().string() + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++));
}

void fsync_dir(const fs::path& dir) {
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}
}  // namespace

void write_all(int fd, const void* data, std::size_t size, const fs::path& path) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(path.string(), ": write failed: ", std::strerror(errno));
    }
    p += n;
    size -= static_cast<std::size_t>(n);
  }
}

void write_file_atomic(const fs::path& path, const std::function<void(int fd)>& writer) {
  if (!path.parent_path().empty()) fs::create_directories(path.parent_path());
  const fs::path tmp = temp_name(path);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(path.string(), ": cannot create temp file ", tmp.string(), ": ", std::strerror(errno));
  try {
    writer(fd);
    if (::fsync(fd) != 0) fail(path.string(), ": fsync failed: ", std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    fail(path.string(), ": rename from ", tmp.string(), " failed: ", std::strerror(err));
  }
  fsync_dir(path.parent_path());
}

void write_file_atomic(const fs::path& path, std::string_view bytes) {
  write_file_atomic(path, [&](int fd) { write_all(fd, bytes.data(), bytes.size(), path); });
}

void replace_directory(const fs::path& tmp_dir, const fs::path& dir) {
  // rename(2) cannot replace a non-empty directory: move the old one aside first, then swap, then delete.
  fs::path old;
  if (fs::exists(dir)) {
    old = temp_name(dir);
    fs::rename(dir, old);
  }
  fs::rename(tmp_dir, dir);
  fsync_dir(dir.parent_path());
  if (!old.empty()) fs::remove_all(old);
}

}  // namespace m2sa
