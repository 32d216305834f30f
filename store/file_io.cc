#include "store/file_io.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tpde {

FileDescriptor::~FileDescriptor() { reset(); }

void FileDescriptor::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

Status PreadFull(int fd, uint64_t offset, uint64_t size, uint8_t* dst, const std::string& path) {
  while (size > 0) {
    ssize_t n = ::pread(fd, dst, size, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::IOError(fmt::format("read '{}' at offset {}: {}", path, offset, std::strerror(errno)));
    }
    if (n == 0) return Status::IOError(fmt::format("'{}' shrank while being read (offset {})", path, offset));
    dst += n;
    offset += static_cast<uint64_t>(n);
    size -= static_cast<uint64_t>(n);
  }
  return Status::OK();
}

}  // namespace tpde
