#include "store/write_guard.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "store/rocks_status.h"

namespace tpde {

namespace {
// The anchor record: an empty value under a key nothing reads, written
// without the log (a crash loses it, which is harmless); flushes carry it
// into table files with the rest of its memtable.
constexpr std::string_view kAnchorKey = std::string_view("\0wal-anchor", 11);

Status FromBackgroundError(const rocksdb::Status& s) {
  const std::string what = fmt::format("the store stopped writing: {}", s.ToString());
  return s.IsNoSpace() ? Status::NoSpace(what) : Status::IOError(what);
}
}  // namespace

WriteGuard::WriteGuard(std::string dir, uint64_t reserve_bytes)
    : reserve_path_((std::filesystem::path(dir) / "reserve").string()), reserve_bytes_(reserve_bytes) {}

void WriteGuard::Attach(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* anchor_cf) {
  db_ = db;
  anchor_cf_ = anchor_cf;
  anchor_cf_name_ = anchor_cf->GetName();
  anchor_missing_ = true;
  EnsureAnchor();
}

void WriteGuard::EnsureAnchor() {
  if (!anchor_missing_.load() || db_ == nullptr) return;
  std::lock_guard<std::mutex> lock(anchor_mu_);
  if (!anchor_missing_.exchange(false)) return;
  rocksdb::WriteOptions wo;
  wo.disableWAL = true;
  wo.no_slowdown = true;  // never waits on a write stall with the lock held
  rocksdb::Status s = db_->Put(wo, anchor_cf_, rocksdb::Slice(kAnchorKey.data(), kAnchorKey.size()), rocksdb::Slice());
  if (!s.ok()) anchor_missing_ = true;
}

void WriteGuard::OnMemTableSealed(const rocksdb::MemTableInfo& info) {
  if (info.cf_name == anchor_cf_name_) anchor_missing_ = true;
}

Status WriteGuard::Run(std::string_view what, const std::function<rocksdb::Status()>& op) {
  std::shared_lock<std::shared_mutex> running(resume_mu_);
  TPDE_RETURN_IF_ERROR(error());
  EnsureAnchor();
  return FromRocks(op(), what);
}

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

Status WriteGuard::Resume() {
  if (error().ok()) return Status::OK();
  std::unique_lock<std::shared_mutex> resuming(resume_mu_);
  Status e = error();
  if (e.ok()) return e;  // another caller resumed
  if (e.IsNoSpace()) ::unlink(reserve_path_.c_str());  // room for the WAL and a flush
  rocksdb::Status s = db_->Resume();
  if (s.ok()) {
    // The resume flushed every memtable, the anchor's too: put it back
    // before anything else can append to the new log.
    anchor_missing_ = true;
    EnsureAnchor();
    spdlog::info("the store resumed writing after: {}", e.ToString());
    std::lock_guard<std::mutex> lock(mu_);
    error_ = Status::OK();
    return error_;
  }
  std::lock_guard<std::mutex> lock(mu_);
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
