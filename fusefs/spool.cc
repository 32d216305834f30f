#include "fusefs/spool.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace tpde {

namespace {
Status Errno(std::string_view what, const std::string& path) {
  return Status::IOError(fmt::format("{} '{}': {}", what, path, std::strerror(errno)));
}

Status SyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Errno("open", dir);
  int rc = ::fsync(fd);
  ::close(fd);
  return rc == 0 ? Status::OK() : Errno("fsync", dir);
}
}  // namespace

Status Spool::Open(const std::string& dir, Spool* out) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IOError(fmt::format("create spool '{}': {}", dir, ec.message()));
  out->dir_ = dir;
  return Status::OK();
}

std::string Spool::DataPath(uint64_t ino) const { return fmt::format("{}/{}.data", dir_, ino); }

Status Spool::OpenData(uint64_t ino, bool truncate, int* fd) const {
  const std::string path = DataPath(ino);
  *fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0600);
  return *fd < 0 ? Errno("open", path) : Status::OK();
}

Status Spool::MarkKeep(uint64_t ino, int fd, bool sync) const {
  const std::string data = DataPath(ino);
  if (sync && ::fsync(fd) != 0) return Errno("fsync", data);
  const std::string keep = fmt::format("{}/{}.keep", dir_, ino);
  int k = ::open(keep.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (k < 0) return Errno("create", keep);
  ::close(k);
  return sync ? SyncDir(dir_) : Status::OK();
}

Status Spool::Remove(uint64_t ino) const {
  const std::string data = DataPath(ino);
  const std::string keep = fmt::format("{}/{}.keep", dir_, ino);
  if (::unlink(keep.c_str()) != 0 && errno != ENOENT) return Errno("unlink", keep);
  if (::unlink(data.c_str()) != 0 && errno != ENOENT) return Errno("unlink", data);
  return Status::OK();
}

Status Spool::List(std::vector<Entry>* out) const {
  out->clear();
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir_, ec)) {
    const std::string name = e.path().filename().string();
    if (!name.ends_with(".data")) continue;
    char* end = nullptr;
    const uint64_t ino = std::strtoull(name.c_str(), &end, 10);
    if (end == nullptr || std::string_view(end) != ".data") continue;
    out->push_back({ino, std::filesystem::exists(fmt::format("{}/{}.keep", dir_, ino))});
  }
  if (ec) return Status::IOError(fmt::format("list spool '{}': {}", dir_, ec.message()));
  return Status::OK();
}

Status Spool::FreeBytes(uint64_t* free, uint64_t* total) const {
  struct statvfs sv {};
  if (::statvfs(dir_.c_str(), &sv) != 0) return Errno("statvfs", dir_);
  *free = uint64_t{sv.f_bavail} * sv.f_frsize;
  *total = uint64_t{sv.f_blocks} * sv.f_frsize;
  return Status::OK();
}

}  // namespace tpde
