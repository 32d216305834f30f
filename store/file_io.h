// Small POSIX file helpers shared by the store's readers of plain files
// (ingest's source files, the repair's blob files). Thread-compatible.
#pragma once

#include <cstdint>
#include <string>

#include "codec/status.h"

namespace tpde {

// Owns a file descriptor (-1: none) and closes it.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd = -1) : fd_(fd) {}
  ~FileDescriptor();
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }
  // Closes the descriptor held, if any, and takes `fd`.
  void reset(int fd = -1);

 private:
  int fd_;
};

// Reads exactly `size` bytes at byte `offset` of `fd` into `dst`, retrying
// short reads and EINTR. IOError naming `path` on an error or when the file
// ends first.
Status PreadFull(int fd, uint64_t offset, uint64_t size, uint8_t* dst, const std::string& path);

}  // namespace tpde
