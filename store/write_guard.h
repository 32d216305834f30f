// WriteGuard: keeps a full or failing disk from stopping the store for good.
//
// RocksDB stops accepting writes after a background error (a failed WAL
// append, flush or compaction: most often ENOSPC) until DB::Resume() succeeds.
// Writing on regardless is unsafe: a later WAL sync after a failed append
// trips an assertion inside RocksDB's file writer. The guard
//   - records the error (an EventListener on OnBackgroundError), so Commit and
//     SyncLog refuse at once with it (kNoSpace for a full disk) instead of
//     reaching RocksDB;
//   - keeps a reserve file of `reserve_bytes` (at most 1/8 of the file
//     system) in the store directory, released
//     when the disk fills so that RocksDB can resume and deletions (which
//     need a few WAL records) still commit on a full disk; it is recreated
//     once space is back;
//   - Resume() clears the error through DB::Resume().
// Source of the recovery model: RocksDB wiki, "Background Error Handling".
// Thread-safety: all methods may be called concurrently.
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/listener.h>

#include <cstdint>
#include <mutex>
#include <string>

#include "codec/thread_annotations.h"
#include "codec/status.h"

namespace tpde {

class WriteGuard : public rocksdb::EventListener {
 public:
  WriteGuard(std::string dir, uint64_t reserve_bytes);

  // OK while RocksDB accepts writes; else the error that stopped it.
  Status error() const;
  // After a background error: releases the reserve (on a full disk) and asks
  // RocksDB to resume. OK once writes are accepted again.
  Status Resume(rocksdb::DB* db);
  // Creates the reserve file if it is missing and the disk has room for it
  // and as much again. Best effort.
  void MaybeRestoreReserve();
  // Free bytes on the store's file system (for unprivileged writers).
  uint64_t FreeBytes() const;
  // True while writes are accepted and the reserve is in place (or none is
  // kept): room for new content. After the reserve was spent to resume, new
  // content waits until space is freed, so deletions keep working.
  bool HasRoom() const;

  // rocksdb::EventListener
  void OnBackgroundError(rocksdb::BackgroundErrorReason reason, rocksdb::Status* bg_error) override;
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason reason, rocksdb::Status bg_error,
                            bool* auto_recovery) override;
  void OnErrorRecoveryEnd(const rocksdb::BackgroundErrorRecoveryInfo& info) override;

 private:
  const std::string reserve_path_;
  const uint64_t reserve_bytes_;
  mutable std::mutex mu_;
  Status error_ TPDE_GUARDED_BY(mu_);
};

}  // namespace tpde
