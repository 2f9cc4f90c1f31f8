#pragma once
// A read-only file mapped into memory (copy-on-write, so tensors built on it may be written in place without
// touching the file). Shared by every tensor that views it; unmapped when the last one goes.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>

namespace m2sa {

class MappedFile {
 public:
  static std::shared_ptr<MappedFile> open(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  uint8_t* mutable_data() const { return data_; }
  std::size_t size() const { return size_; }
  // Drops the resident pages that lie wholly inside [offset, offset + n) from this process (madvise DONTNEED; they
  // stay in the page cache). Only for ranges that no live tensor views and that were never written: a read-only
  // page comes back from the file at the next access, a written (copied) one would be lost.
  void release(std::size_t offset, std::size_t n) const;
  const std::filesystem::path& path() const { return path_; }

 private:
  MappedFile() = default;
  uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
  std::filesystem::path path_;
};

}  // namespace m2sa
