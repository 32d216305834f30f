// FaultFs: a RocksDB FileSystem that fails writes and syncs on demand, for
// tests in the spirit of LevelDB's fault_injection_test: every file RocksDB
// writes (WAL, table, blob, MANIFEST) goes through it.
//   - set_write_budget(n): appends succeed for n more bytes in total, then
//     fail with NoSpace (a full disk); -1 (the default) for no limit;
//   - set_fail_syncs(true): Sync/Fsync fail with an I/O error.
// Thread-safety: the switches are atomics; RocksDB calls from any thread.
#pragma once

#include <rocksdb/file_system.h>

#include <atomic>
#include <memory>
#include <string>

namespace tpde::test {

class FaultFs : public rocksdb::FileSystemWrapper {
 public:
  FaultFs() : rocksdb::FileSystemWrapper(rocksdb::FileSystem::Default()) {}
  const char* Name() const override { return "FaultFs"; }

  void set_write_budget(int64_t bytes) { budget_ = bytes; }
  void set_fail_syncs(bool fail) { fail_syncs_ = fail; }

  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* dbg) override {
    std::unique_ptr<rocksdb::FSWritableFile> file;
    rocksdb::IOStatus s = target()->NewWritableFile(f, o, &file, dbg);
    if (s.ok()) r->reset(new File(std::move(file), this));
    return s;
  }

 private:
  class File : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSWritableFile>&& f, FaultFs* fs)
        : rocksdb::FSWritableFileOwnerWrapper(std::move(f)), fs_(fs) {}
    rocksdb::IOStatus Append(const rocksdb::Slice& d, const rocksdb::IOOptions& o,
                             rocksdb::IODebugContext* dbg) override {
      if (!fs_->Take(d.size())) return rocksdb::IOStatus::NoSpace("FaultFs: no space left");
      return target()->Append(d, o, dbg);
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& d, const rocksdb::IOOptions& o,
                             const rocksdb::DataVerificationInfo& v, rocksdb::IODebugContext* dbg) override {
      if (!fs_->Take(d.size())) return rocksdb::IOStatus::NoSpace("FaultFs: no space left");
      return target()->Append(d, o, v, dbg);
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      if (fs_->fail_syncs_) return rocksdb::IOStatus::IOError("FaultFs: sync failed");
      return target()->Sync(o, dbg);
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      if (fs_->fail_syncs_) return rocksdb::IOStatus::IOError("FaultFs: sync failed");
      return target()->Fsync(o, dbg);
    }

   private:
    FaultFs* fs_;
  };

  bool Take(size_t n) {
    int64_t b = budget_.load();
    while (b >= 0) {
      if (b < static_cast<int64_t>(n)) {
        budget_ = 0;
        return false;
      }
      if (budget_.compare_exchange_weak(b, b - static_cast<int64_t>(n))) return true;
    }
    return true;
  }

  std::atomic<int64_t> budget_{-1};
  std::atomic<bool> fail_syncs_{false};
};

}  // namespace tpde::test
