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

constexpr uint64_t kPartAlign = 2u << 20;  // part boundaries: whole pages (and huge pages)

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

// pwrite into consecutive parts of `part_bytes` each (the last may be shorter).
Status FillByPwrite(const FileReader& reader, const ChainBundleLayout& layout, ThreadPool* pool,
                    const std::vector<int>& fds, uint64_t part_bytes) {
  return reader.WriteBundle(
      layout,
      [&](uint64_t offset, const void* data, size_t size) -> Status {
        const uint8_t* p = static_cast<const uint8_t*>(data);
        while (size > 0) {
          const size_t part = static_cast<size_t>(offset / part_bytes);
          const uint64_t within = offset - part * part_bytes;
          const size_t n = static_cast<size_t>(std::min<uint64_t>(size, part_bytes - within));
          TPDE_RETURN_IF_ERROR(PwriteAll(fds[part], p, n, within));
          p += n;
          offset += n;
          size -= n;
        }
        return Status::OK();
      },
      pool, fds.size());
}

Status FillByMapping(const FileReader& reader, const ChainBundleLayout& layout, ThreadPool* pool, int fd) {
  const uint64_t bytes = layout.total_bytes();
  void* map = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) return Errno("mmap", bytes);
  // A tmpfs page that cannot be allocated would be SIGBUS on the write:
  // reserve them all first (ENOSPC here instead).
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

uint64_t BundleParts::total_bytes() const {
  uint64_t t = 0;
  for (uint64_t b : bytes) t += b;
  return t;
}

Status MakeBundleMemfds(const FileReader& reader, const ChainBundleLayout& layout, BundleFill fill, size_t max_parts,
                        ThreadPool* pool, BundleParts* out) {
  const uint64_t total = layout.total_bytes();
  uint64_t part_bytes = total;
  if (fill == BundleFill::kParts && max_parts > 1) {
    part_bytes = std::max<uint64_t>(kPartAlign, (total / max_parts + kPartAlign - 1) / kPartAlign * kPartAlign);
  }
  BundleParts parts;
  for (uint64_t at = 0; at < total || parts.fds.empty(); at += part_bytes) {
    const uint64_t n = std::min(part_bytes, total - at);
    UniqueFd mem(::memfd_create("tpde-bundle", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (mem.get() < 0) return Errno("memfd_create", total);
    if (::ftruncate(mem.get(), static_cast<off_t>(n)) != 0) return Errno("ftruncate", total);
    parts.fds.push_back(std::move(mem));
    parts.bytes.push_back(n);
    if (n == 0) break;
  }
  std::vector<int> raw;
  for (const UniqueFd& fd : parts.fds) raw.push_back(fd.get());
  TPDE_RETURN_IF_ERROR(fill == BundleFill::kMapped ? FillByMapping(reader, layout, pool, raw[0])
                                                   : FillByPwrite(reader, layout, pool, raw, part_bytes));
  for (const UniqueFd& fd : parts.fds) {
    if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
      return Errno("sealing", total);
    }
  }
  *out = std::move(parts);
  return Status::OK();
}

Status CheckBundleBuffers(const std::vector<int>& fds, uint64_t* part_bytes) {
  if (fds.empty()) return Status::InvalidArgument("no bundle buffers");
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  for (size_t i = 0; i < fds.size(); ++i) {
    struct stat st;
    if (::fcntl(fds[i], F_GET_SEALS) < 0 || ::fstat(fds[i], &st) != 0 || !S_ISREG(st.st_mode)) {
      return Status::InvalidArgument(fmt::format("bundle buffer {} is not a memfd", i));
    }
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    if (i == 0) *part_bytes = size;
    if (size != *part_bytes || size == 0 || size % page != 0) {
      return Status::InvalidArgument("bundle buffers must all have one size, a whole number of pages");
    }
  }
  return Status::OK();
}

Status FillBundleBuffers(const FileReader& reader, const ChainBundleLayout& layout, const std::vector<int>& fds,
                         uint64_t part_bytes, ThreadPool* pool) {
  if (fds.size() * part_bytes < layout.total_bytes()) {
    return Status::InvalidArgument(fmt::format("bundle buffers of {} bytes for a bundle of {}",
                                               fds.size() * part_bytes, layout.total_bytes()));
  }
  return FillByPwrite(reader, layout, pool, fds, part_bytes);
}

}  // namespace tpde
