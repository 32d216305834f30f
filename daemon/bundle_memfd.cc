#include "daemon/bundle_memfd.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace tpde {

namespace {

Status Errno(const char* what, uint64_t bytes) {
  return Status::IOError(fmt::format("bundle of {} bytes: {}: {}", bytes, what, std::strerror(errno)));
}

Status PwriteAll(int fd, const void* data, size_t size, uint64_t offset) {
  for (size_t done = 0; done < size;) {
    ssize_t w = ::pwrite(fd, static_cast<const char*>(data) + done, size - done, static_cast<off_t>(offset + done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return Status::IOError(fmt::format("writing the bundle: {}", std::strerror(errno)));
    done += static_cast<size_t>(w);
  }
  return Status::OK();
}

Status FillByMapping(const FileReader& reader, const ChainBundleLayout& layout, ThreadPool* pool, int fd) {
  const uint64_t bytes = layout.total_bytes();
  void* map = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) return Errno("mmap", bytes);
  // A tmpfs page that cannot be allocated would be SIGBUS on the write:
  // reserve them all first (ENOSPC or ENOMEM here instead).
  Status s;
  if (::fallocate(fd, 0, 0, static_cast<off_t>(bytes)) != 0) s = Errno("fallocate", bytes);
  if (s.ok()) {
    uint8_t* base = static_cast<uint8_t*>(map);
    s = reader.WriteBundle(
        layout,
        [base](uint64_t offset, const void* data, size_t size) -> Status {
          std::memcpy(base + offset, data, size);
          return Status::OK();
        },
        pool);
  }
  ::munmap(map, bytes);  // before sealing: F_SEAL_WRITE refuses while a writable mapping exists
  return s;
}

}  // namespace

Status MakeBundleMemfd(const FileReader& reader, const ChainBundleLayout& layout, BundleFill fill, ThreadPool* pool,
                       UniqueFd* out) {
  const uint64_t bytes = layout.total_bytes();
  UniqueFd mem(::memfd_create("tpde-bundle", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (mem.get() < 0) return Errno("memfd_create", bytes);
  if (::ftruncate(mem.get(), static_cast<off_t>(bytes)) != 0) return Errno("ftruncate", bytes);
  if (fill == BundleFill::kMapped) {
    TPDE_RETURN_IF_ERROR(FillByMapping(reader, layout, pool, mem.get()));
  } else {
    const int fd = mem.get();
    TPDE_RETURN_IF_ERROR(reader.WriteBundle(
        layout, [fd](uint64_t offset, const void* data, size_t size) { return PwriteAll(fd, data, size, offset); },
        pool));
  }
  if (::fcntl(mem.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
    return Errno("sealing", bytes);
  }
  *out = std::move(mem);
  return Status::OK();
}

Status CheckBundleBuffers(const std::vector<int>& fds, uint64_t* buffer_bytes) {
  if (fds.empty() || fds.size() > kMaxBundleBuffers) {
    return Status::InvalidArgument(fmt::format("1 to {} bundle buffers, not {}", kMaxBundleBuffers, fds.size()));
  }
  for (size_t i = 0; i < fds.size(); ++i) {
    struct stat st;
    if (::fcntl(fds[i], F_GET_SEALS) < 0 || ::fstat(fds[i], &st) != 0 || !S_ISREG(st.st_mode)) {
      return Status::InvalidArgument(fmt::format("bundle buffer {} is not a memfd", i));
    }
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    if (i == 0) *buffer_bytes = size;
    if (size != *buffer_bytes || size == 0 || size % kBundleBlockBytes != 0) {
      return Status::InvalidArgument(
          fmt::format("bundle buffers must all have one size, whole blocks of {} bytes", kBundleBlockBytes));
    }
  }
  return Status::OK();
}

Status FillBundleBuffers(const FileReader& reader, const ChainBundleLayout& layout, const std::vector<int>& fds,
                         uint64_t buffer_bytes, BundlePart part, ThreadPool* pool,
                         const FileReader::ChunkWritten& written) {
  if (BundleBufferBytes(layout.total_bytes(), fds.size()) > buffer_bytes) {
    return Status::InvalidArgument(fmt::format("{} bundle buffers of {} bytes for a bundle of {}", fds.size(),
                                               buffer_bytes, layout.total_bytes()));
  }
  auto sink = [&fds](uint64_t offset, const void* data, size_t size) -> Status {
    const uint8_t* p = static_cast<const uint8_t*>(data);
    while (size > 0) {
      const BundleSpot spot = BundleBufferSpot(offset, fds.size());
      const size_t n = static_cast<size_t>(std::min<uint64_t>(size, spot.contiguous));
      TPDE_RETURN_IF_ERROR(PwriteAll(fds[spot.buffer], p, n, spot.offset));
      p += n;
      offset += n;
      size -= n;
    }
    return Status::OK();
  };
  if (part != BundlePart::kPayloads) TPDE_RETURN_IF_ERROR(reader.WriteBundleTables(layout, sink));
  if (part != BundlePart::kTables) TPDE_RETURN_IF_ERROR(reader.WriteBundlePayloads(layout, sink, pool, written));
  return Status::OK();
}

}  // namespace tpde
