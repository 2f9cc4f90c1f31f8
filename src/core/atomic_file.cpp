#include "m2sa/core/atomic_file.h"

#include <fcntl.h>
#include <stdio.h>  // renameat2 (glibc 2.28+, _GNU_SOURCE)
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <random>

#include "m2sa/core/error.h"

namespace m2sa {
namespace fs = std::filesystem;

namespace {

// A fresh name beside `path`. The random part makes the name unguessable, so nothing can be planted under it in
// advance; O_EXCL / RENAME_NOREPLACE at the use refuse what exists anyway.
fs::path atomic_temp_name(const fs::path& path) {
  static std::atomic<unsigned> counter{0};
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return path.parent_path() / ("." + path.filename().string() + ".tmp." + std::to_string(::getpid()) + "." +
                               std::to_string(counter++) + "." + std::to_string(rng()));
}

// Makes the directory entries of `dir` (a rename, a new file) durable.
void fsync_dir(const fs::path& dir) {
  const char* name = dir.empty() ? "." : dir.c_str();
  int dfd = ::open(name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) fail(name, ": cannot open the directory to sync it: ", std::strerror(errno));
  // Some file systems cannot sync a directory (EINVAL): there is nothing more to do there.
  if (::fsync(dfd) != 0 && errno != EINVAL) {
    const int err = errno;
    ::close(dfd);
    fail(name, ": fsync of the directory failed: ", std::strerror(err));
  }
  if (::close(dfd) != 0) fail(name, ": close of the directory failed: ", std::strerror(errno));
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
  fs::path tmp;
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    tmp = atomic_temp_name(path);
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) fail(path.string(), ": cannot create temp file ", tmp.string(), ": ", std::strerror(errno));
  try {
    writer(fd);
    if (::fsync(fd) != 0) fail(path.string(), ": fsync failed: ", std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  // close() reports write-back errors (NFS, quotas) that write() did not.
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail(path.string(), ": close of temp file ", tmp.string(), " failed: ", std::strerror(err));
  }
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
  std::error_code ec;
  if (!fs::is_directory(fs::symlink_status(tmp_dir, ec)))
    fail(dir.string(), ": cannot replace it with ", tmp_dir.string(), ": that is not a directory");
  const fs::file_status target = fs::symlink_status(dir, ec);
  if (fs::exists(target) && !fs::is_directory(target))
    fail(dir.string(), ": exists and is not a directory; refusing to replace it with ", tmp_dir.string());
  fsync_dir(tmp_dir);  // the new directory's entries are on disk before it becomes `dir`
  if (!fs::exists(target)) {
    if (::renameat2(AT_FDCWD, tmp_dir.c_str(), AT_FDCWD, dir.c_str(), RENAME_NOREPLACE) != 0)
      fail(dir.string(), ": rename from ", tmp_dir.string(), " failed: ", std::strerror(errno));
    fsync_dir(dir.parent_path());
    return;
  }
  // One exchange of the two names: `dir` names the old directory or the new one at every instant, also across a
  // crash (rename(2) cannot replace a non-empty directory, and moving the old one aside first left a window
  // with no `dir` at all). The old contents end up under `tmp_dir`, removed once the swap is durable.
  if (::renameat2(AT_FDCWD, tmp_dir.c_str(), AT_FDCWD, dir.c_str(), RENAME_EXCHANGE) != 0)
    fail(dir.string(), ": exchange with ", tmp_dir.string(), " failed: ", std::strerror(errno),
         errno == EINVAL ? " (the file system does not support RENAME_EXCHANGE)" : "");
  fsync_dir(dir.parent_path());
  fs::remove_all(tmp_dir, ec);
  if (ec) fail(tmp_dir.string(), ": cannot remove the replaced directory: ", ec.message());
}

}  // namespace m2sa
