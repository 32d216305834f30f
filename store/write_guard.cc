#include "store/write_guard.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

namespace tpde {

namespace {
Status FromBackgroundError(const rocksdb::Status& s) {
  const std::string what = fmt::format("the store stopped writing: {}", s.ToString());
  return s.IsNoSpace() ? Status::NoSpace(what) : Status::IOError(what);
}
}  // namespace

WriteGuard::WriteGuard(std::string dir, uint64_t reserve_bytes)
    : reserve_path_((std::filesystem::path(dir) / "reserve").string()), reserve_bytes_(reserve_bytes) {}

Status WriteGuard::error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return error_;
}

void WriteGuard::OnBackgroundError(rocksdb::BackgroundErrorReason, rocksdb::Status* bg_error) {
  if (bg_error == nullptr || bg_error->ok()) return;
  std::lock_guard<std::mutex> lock(mu_);
  error_ = FromBackgroundError(*bg_error);
}

void WriteGuard::OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason, rocksdb::Status, bool* auto_recovery) {
  // RocksDB's own recovery from a full disk waits for free space of a whole
  // write buffer per column family (hundreds of MiB) and, while it waits,
  // refuses DB::Resume(). The guard resumes itself, with its reserve.
  if (auto_recovery != nullptr) *auto_recovery = false;
}

void WriteGuard::OnErrorRecoveryEnd(const rocksdb::BackgroundErrorRecoveryInfo& info) {
  if (!info.new_bg_error.ok()) return;
  std::lock_guard<std::mutex> lock(mu_);
  error_ = Status::OK();
}

Status WriteGuard::Resume(rocksdb::DB* db) {
  Status e = error();
  if (e.ok()) return e;
  if (e.IsNoSpace()) ::unlink(reserve_path_.c_str());  // room for the WAL and a flush
  rocksdb::Status s = db->Resume();
  std::lock_guard<std::mutex> lock(mu_);
  if (s.ok()) {
    error_ = Status::OK();
    return error_;
  }
  // Still stopped: report it as what stopped it (a full disk stays ENOSPC).
  const std::string what = fmt::format("the store cannot resume writing: {}", s.ToString());
  return e.IsNoSpace() || s.IsNoSpace() ? Status::NoSpace(what) : Status::IOError(what);
}

bool WriteGuard::HasRoom() const {
  if (!error().ok()) return false;
  return reserve_bytes_ == 0 || ::access(reserve_path_.c_str(), F_OK) == 0;
}

uint64_t WriteGuard::FreeBytes() const {
  struct statvfs sv {};
  const std::string dir = std::filesystem::path(reserve_path_).parent_path().string();
  if (::statvfs(dir.c_str(), &sv) != 0) return 0;
  return uint64_t{sv.f_bavail} * sv.f_frsize;
}

void WriteGuard::MaybeRestoreReserve() {
  if (reserve_bytes_ == 0 || ::access(reserve_path_.c_str(), F_OK) == 0) return;
  struct statvfs sv {};
  const std::string dir = std::filesystem::path(reserve_path_).parent_path().string();
  if (::statvfs(dir.c_str(), &sv) != 0) return;
  const uint64_t size = std::min<uint64_t>(reserve_bytes_, uint64_t{sv.f_blocks} * sv.f_frsize / 8);
  if (size == 0 || uint64_t{sv.f_bavail} * sv.f_frsize < 2 * size) return;
  int fd = ::open(reserve_path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return;
  if (::posix_fallocate(fd, 0, static_cast<off_t>(size)) != 0) {
    ::close(fd);
    ::unlink(reserve_path_.c_str());
    return;
  }
  ::fsync(fd);
  ::close(fd);
}

}  // namespace tpde
