// WriteGuard: keeps a full or failing disk from stopping the store for good.
//
// RocksDB stops accepting writes after a background error (a failed WAL
// append, flush or compaction: most often ENOSPC) until DB::Resume() succeeds.
// Writing on regardless is unsafe: RocksDB 7.8 (Debian 12's) asserts, and so
// aborts the process, when a log whose append failed is appended to or synced
// again (facebook/rocksdb#12448, fixed in 9.1). DB::Resume() replaces that log
// only when some memtable holds data (it flushes them, and a flush starts a
// new log); with every memtable empty it resumes onto the failed log. The
// guard
//   - runs every store operation that may touch the log (writes, syncs,
//     flushes, compactions) through Run(): refused at once with the recorded
//     error while RocksDB is stopped, and never concurrently with Resume();
//   - keeps the anchor column family's memtable non-empty (a record written
//     without the log, put again whenever that memtable is sealed and after
//     each resume), so that a resume always starts a new log;
//   - records the error (an EventListener on OnBackgroundError), kNoSpace for
//     a full disk;
//   - keeps a reserve file of `reserve_bytes` (at most 1/8 of the file
//     system) in the store directory, released
//     when the disk fills so that RocksDB can resume and deletions (which
//     need a few WAL records) still commit on a full disk; it is recreated
//     once space is back;
//   - Resume() clears the error through DB::Resume(), once the disk has room
//     for the flush a resume writes: free space for every memtable, and a
//     probe file that takes an append and a sync through the store's
//     FileSystem. RocksDB 7.8 can wait for good inside a DB::Resume() that
//     follows one whose recovery flush failed on a full disk (the failed
//     flush's memtable is never scheduled again), so a resume is not tried
//     while the disk is still full; RocksDB's own recovery from a full disk
//     waits for free space the same way (SstFileManagerImpl::ClearError).
// Source of the recovery model: RocksDB wiki, "Background Error Handling".
// What is left: the anchor's memtable can be sealed by the very write whose
// append then fails (RocksDB switches memtables before appending); if no
// other memtable holds data then, RocksDB resumes onto the failed log, and
// Resume() sees it (the log number did not change) and refuses from then on
// (a permanent error: restart tpded) instead of letting an append abort. A memtable flush
// or compaction that runs while a log append fails can still meet the failed
// log; RocksDB then reports a fatal error (no abort) and writes stay refused
// until tpded restarts.
// Thread-safety: all methods may be called concurrently.
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/file_system.h>
#include <rocksdb/listener.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>

#include "codec/thread_annotations.h"
#include "codec/status.h"

namespace tpde {

class WriteGuard : public rocksdb::EventListener {
 public:
  WriteGuard(std::string dir, uint64_t reserve_bytes);

  // Binds the guard to the open database (not owned; it outlives the guard's
  // use). `anchor_cf` (not owned) is the column family whose memtable the
  // guard keeps non-empty. Writes nothing. Call once, after DB::Open and
  // before any Run().
  void Attach(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* anchor_cf);

  // OK while RocksDB accepts writes; else the error that stopped it.
  Status error() const;
  // Runs `op` (a RocksDB write, log sync, flush or compaction on the attached
  // database) unless writes are stopped, in which case it returns error()
  // without running it. `what` names the operation in the returned error.
  Status Run(std::string_view what, const std::function<rocksdb::Status()>& op);
  // After a background error: releases the reserve (on a full disk) and asks
  // RocksDB to resume, excluding every Run(). OK once writes are accepted
  // again.
  Status Resume();
  // Creates the reserve file if it is missing and the disk has room for it
  // and as much again. Best effort.
  void MaybeRestoreReserve();
  // Free bytes on the store's file system that this process may write:
  // f_bfree as root (who may use the blocks kept for root), else f_bavail.
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
  void OnMemTableSealed(const rocksdb::MemTableInfo& info) override;

 private:
  // Puts the anchor record if its memtable is empty (waiting out a write
  // stall like any write). On failure the flag stays set for the next try.
  Status EnsureAnchor();
  // The number of the log RocksDB appends to now (0 if unknown).
  uint64_t CurrentLog() const;
  // OK if the store's disk takes what a resume writes now: free space for
  // every memtable's bytes and a probe file appended and synced through the
  // database's FileSystem (so injected faults count too). NoSpace or IOError
  // otherwise.
  Status CheckRoomToResume() const;

  const std::string reserve_path_;
  const std::string probe_path_;
  const uint64_t reserve_bytes_;
  rocksdb::DB* db_ = nullptr;
  rocksdb::ColumnFamilyHandle* anchor_cf_ = nullptr;
  std::string anchor_cf_name_;
  // Shared by Run(), exclusive in Resume(): no operation reaches RocksDB
  // between its resume and the anchor put after it.
  std::shared_mutex resume_mu_;
  std::mutex anchor_mu_;  // one anchor put at a time
  std::atomic<bool> anchor_missing_{true};
  mutable std::mutex mu_;
  Status error_ TPDE_GUARDED_BY(mu_);
  bool log_append_failed_ TPDE_GUARDED_BY(mu_) = false;  // since the last resume
  uint64_t failed_log_ TPDE_GUARDED_BY(mu_) = 0;          // the log whose append failed
  bool stuck_ = false;  // RocksDB resumed onto the failed log; only under resume_mu_ (exclusive)
};

}  // namespace tpde
