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
    : reserve_path_((std::filesystem::path(dir) / "reserve").string()),
      probe_path_((std::filesystem::path(dir) / "resume-probe").string()),
      reserve_bytes_(reserve_bytes) {}

void WriteGuard::Attach(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* anchor_cf) {
  db_ = db;
  anchor_cf_ = anchor_cf;
  anchor_cf_name_ = anchor_cf_->GetName();
  anchor_missing_ = true;  // put by the first Run: opening alone writes nothing
}

Status WriteGuard::EnsureAnchor() {
  if (!anchor_missing_.load()) return Status::OK();
  std::lock_guard<std::mutex> lock(anchor_mu_);
  if (!anchor_missing_.exchange(false)) return Status::OK();
  rocksdb::WriteOptions wo;
  wo.disableWAL = true;
  rocksdb::Status s = db_->Put(wo, anchor_cf_, rocksdb::Slice(kAnchorKey.data(), kAnchorKey.size()), rocksdb::Slice());
  if (!s.ok()) anchor_missing_ = true;
  return FromRocks(s, "keeping the log anchor");
}

uint64_t WriteGuard::CurrentLog() const {
  std::unique_ptr<rocksdb::LogFile> log;
  return db_->GetCurrentWalFile(&log).ok() && log != nullptr ? log->LogNumber() : 0;
}

void WriteGuard::OnMemTableSealed(const rocksdb::MemTableInfo& info) {
  if (info.cf_name == anchor_cf_name_) anchor_missing_ = true;
}

Status WriteGuard::Run(std::string_view what, const std::function<rocksdb::Status()>& op) {
  std::shared_lock<std::shared_mutex> running(resume_mu_);
  TPDE_RETURN_IF_ERROR(error());
  TPDE_RETURN_IF_ERROR(EnsureAnchor());  // never an append without the anchor
  return FromRocks(op(), what);
}

Status WriteGuard::error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return error_;
}

void WriteGuard::OnBackgroundError(rocksdb::BackgroundErrorReason reason, rocksdb::Status* bg_error) {
  if (bg_error == nullptr || bg_error->ok()) return;
  std::lock_guard<std::mutex> lock(mu_);
  error_ = FromBackgroundError(*bg_error);
  if (reason == rocksdb::BackgroundErrorReason::kWriteCallback) log_append_failed_ = true;
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

Status WriteGuard::CheckRoomToResume() const {
  constexpr size_t kProbeBytes = 64 << 10;
  uint64_t memtable_bytes = 0;
  (void)db_->GetAggregatedIntProperty(rocksdb::DB::Properties::kCurSizeAllMemTables, &memtable_bytes);
  const uint64_t free_bytes = FreeBytes();
  if (free_bytes < memtable_bytes + (1 << 20)) {
    return Status::NoSpace(fmt::format("the store's disk has {} bytes free, a resume flushes {}", free_bytes,
                                       memtable_bytes));
  }
  rocksdb::FileSystem* fs = db_->GetFileSystem();
  const rocksdb::IOOptions io;
  std::unique_ptr<rocksdb::FSWritableFile> probe;
  rocksdb::IOStatus s = fs->NewWritableFile(probe_path_, rocksdb::FileOptions(), &probe, nullptr);
  if (s.ok()) s = probe->Append(rocksdb::Slice(std::string(kProbeBytes, '\0')), io, nullptr);
  if (s.ok()) s = probe->Sync(io, nullptr);
  if (probe != nullptr) (void)probe->Close(io, nullptr);
  (void)fs->DeleteFile(probe_path_, io, nullptr);
  if (s.ok()) return Status::OK();
  const std::string what = fmt::format("the store's disk takes no writes yet: {}", s.ToString());
  return s.IsNoSpace() ? Status::NoSpace(what) : Status::IOError(what);
}

Status WriteGuard::Resume() {
  if (error().ok()) return Status::OK();
  std::unique_lock<std::shared_mutex> resuming(resume_mu_);
  Status e = error();
  if (e.ok()) return e;  // another caller resumed
  if (stuck_) return e;
  // The log whose append failed is still the current one at the first
  // resume after it: nothing can start a new log while RocksDB is stopped.
  // (Never asked for under mu_: RocksDB may hold its own mutex while it
  // calls the listener, which takes mu_.)
  const uint64_t log_now = CurrentLog();
  uint64_t failed_log = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (log_append_failed_ && failed_log_ == 0) failed_log_ = log_now;
    failed_log = failed_log_;
  }
  if (e.IsNoSpace()) ::unlink(reserve_path_.c_str());  // room for the WAL and a flush
  if (Status room = CheckRoomToResume(); !room.ok()) return room;
  rocksdb::Status s = db_->Resume();
  if (s.ok() && failed_log != 0 && CurrentLog() == failed_log) {
    // The resume went on with the failed log (the anchor's memtable was
    // sealed by the very write whose append failed, and no other memtable
    // held data): its next append would abort the process. Writes stay
    // refused; reads go on.
    const Status stuck = Status::IOError(
        "a log append failed and RocksDB 7.8 resumed onto that log (facebook/rocksdb#12448): "
        "restart tpded to write again");
    spdlog::error("{}", stuck.ToString());
    stuck_ = true;
    std::lock_guard<std::mutex> lock(mu_);
    error_ = stuck;
    return stuck;
  }
  if (s.ok()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      log_append_failed_ = false;  // the failed log is behind us
      failed_log_ = 0;
    }
    // The resume flushed every memtable, the anchor's too: put it back
    // before anything else can append to the new log. If it cannot be put,
    // writes stay refused and the next Resume() tries again.
    anchor_missing_ = true;
    if (Status a = EnsureAnchor(); !a.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      error_ = a;
      return a;
    }
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
  // Root also writes into the blocks ext4 keeps for root (5% by default):
  // RocksDB fills the disk to f_bfree, not to f_bavail.
  return uint64_t{::geteuid() == 0 ? sv.f_bfree : sv.f_bavail} * sv.f_frsize;
}

void WriteGuard::MaybeRestoreReserve() {
  if (reserve_bytes_ == 0 || ::access(reserve_path_.c_str(), F_OK) == 0) return;
  struct statvfs sv {};
  const std::string dir = std::filesystem::path(reserve_path_).parent_path().string();
  if (::statvfs(dir.c_str(), &sv) != 0) return;
  const uint64_t size = std::min<uint64_t>(reserve_bytes_, uint64_t{sv.f_blocks} * sv.f_frsize / 8);
  if (size == 0 || FreeBytes() < 2 * size) return;
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
