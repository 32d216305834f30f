// Spool: local files holding the content of files being written and of
// complete versions waiting for the ingest workers to commit them.
//
// For inode N the spool directory holds at most:
//   N.draft         the version open handles are writing; never survives a
//                   restart (a crash mid-write leaves the previous version);
//   N.new           the same for a file created by this draft: after a crash
//                   the file never had a complete version and is removed;
//   N.<seq>.sealed  a complete version: its last writer closed it, or it was
//                   fsynced. Immutable once sealed. <seq> only grows;
//   N.<seq>.synced  empty marker: N.<seq>.sealed and its name are durable
//                   (fsynced, directory synced), so it survives power loss.
// A sealed version is deleted once a newer one is committed to the store or
// is itself durable; until then an older durable version is kept, so a power
// loss that takes the newer, never-fsynced one still leaves what was fsynced.
//
// Recovery trusts a sealed version that is not marked durable only when the
// machine has not rebooted since it was written (the kernel page cache kept
// it across a crash of the daemon) or the daemon stopped cleanly (it makes
// every sealed version durable on the way out): the boot id of the run that
// wrote the spool is kept in `boot_id`. Files of the format before sealed
// versions (`N.data` with an `N.keep` marker) are recovered as sequence 1.
// Sequences start at 1 and grow across all files of a spool.
//
// Thread-safety: none; the caller (Filesystem) serialises calls. Methods
// touching one inode's files never touch another's.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "codec/status.h"

namespace tpde {

// An open spool file, closed with its last owner: readers and writers hold a
// reference while they use the descriptor, so replacing a version never
// closes a descriptor under a read in flight.
class SpoolFd {
 public:
  explicit SpoolFd(int fd) : fd_(fd) {}
  ~SpoolFd();
  SpoolFd(const SpoolFd&) = delete;
  SpoolFd& operator=(const SpoolFd&) = delete;
  int get() const { return fd_; }
  // Held around each write into the file: one writer at a time sleeps here
  // instead of many spinning on the kernel's inode lock.
  std::mutex& write_mu() const { return write_mu_; }

 private:
  int fd_;
  mutable std::mutex write_mu_;
};
using SpoolFile = std::shared_ptr<const SpoolFd>;

class Spool {
 public:
  // Creates `dir` (mode 0700) if needed.
  static Status Open(const std::string& dir, Spool* out);

  struct Recovered {  // the newest trustworthy complete version of an inode
    uint64_t ino = 0;
    uint64_t seq = 0;
    bool synced = false;
  };
  struct RecoveryReport {
    std::vector<Recovered> versions;       // to ingest
    std::vector<uint64_t> unfinished_new;  // files created, never closed or fsynced
    std::vector<std::string> log;          // what was dropped, and why
  };
  // Finds what to ingest and deletes everything else: drafts, temporaries,
  // older versions, and (after a reboot without a clean stop) sealed
  // versions that were never made durable. Then records the current boot id.
  Status Recover(RecoveryReport* report);
  // Marks the spool as stopped cleanly (call after MakeDurable on every
  // sealed version): the next start trusts it even after a reboot.
  Status MarkCleanStop();

  std::string SealedPath(uint64_t ino, uint64_t seq) const;

  // Creates the draft, empty, read-write: N.new for a file being created
  // (`new_file`), else N.draft.
  Status CreateDraft(uint64_t ino, bool new_file, int* fd) const;
  // Creates N.draft as a copy of the file open as `src_fd` (reflink where the
  // file system can, else an in-kernel copy).
  Status CopyToDraft(uint64_t ino, int src_fd, int* fd) const;
  // Renames the draft to N.<seq>.sealed (the open descriptor stays valid).
  Status SealDraft(uint64_t ino, bool new_file, uint64_t seq) const;
  // fsyncs the sealed data and records N.<seq>.synced durably.
  Status MakeDurable(uint64_t ino, uint64_t seq, int sealed_fd) const;
  // Opens a sealed version read-only.
  Status OpenSealed(uint64_t ino, uint64_t seq, int* fd) const;
  // Deletes N.draft / a sealed version and its marker. Missing files are fine.
  Status RemoveDraft(uint64_t ino, bool new_file) const;
  Status RemoveSealed(uint64_t ino, uint64_t seq) const;

  // Bytes free on the spool's file system.
  Status FreeBytes(uint64_t* free, uint64_t* total) const;

 private:
  std::string DraftPath(uint64_t ino, bool new_file) const;
  std::string SyncedPath(uint64_t ino, uint64_t seq) const;
  std::string dir_;
};

}  // namespace tpde
