// Filesystem: the file-system semantics tpded serves, on top of a Store.
//
// Committed files are read chunk by chunk from the store through a bounded
// cache of decoded chunks, with sequential read-ahead. A file opened for
// writing lives in the spool (fusefs/spool.h) until its last writer closes
// it; then ingest workers encode and commit it (parse, reference choice,
// delta, encode, one atomic commit), after which the spool copy is dropped.
// Until then reads are served from the spool, so size, mtime and content are
// always those last written. Reopening a committed file for writing
// materialises it into the spool (unless truncated).
//
// Every operation returns 0 or a positive errno and is safe to call from the
// FUSE session's worker threads concurrently. FUSE types stay in
// fusefs/fuse_ops.cc; this class uses struct stat and plain values.
#pragma once

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "codec/thread_annotations.h"
#include "fusefs/chunk_cache.h"
#include "fusefs/spool.h"
#include "store/store.h"

namespace tpde {

inline constexpr size_t kAutoReadahead = ~size_t{0};

struct FsOptions {
  std::string spool_dir;               // local directory for files being written
  uint64_t cache_bytes = 256ull << 20; // decoded chunk cache
  size_t ingest_threads = 4;           // concurrent ingests (they share the store's pool)
  size_t readahead_chunks = kAutoReadahead;  // MiB decoded ahead of a sequential reader (auto: 8 per core, at least 16, at most an eighth of the cache)
  // How long a closed file waits before its ingest starts: tools that write
  // a temporary name and rename it after close (rsync, atomic savers) get
  // their final name first, which is what reference choice looks at.
  uint64_t ingest_delay_ms = 100;
};

struct SetAttrRequest {
  std::optional<uint32_t> mode;
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
  std::optional<uint64_t> size;
  std::optional<int64_t> mtime_ns;  // already resolved for UTIME_NOW
};

struct DirListEntry {
  std::string name;
  struct stat st;
};

class Filesystem {
 public:
  // Opens the spool and recovers it: closed or fsynced files are queued for
  // ingest; files that were open for writing, never synced, are discarded.
  static Status Open(Store* store, const FsOptions& options, std::unique_ptr<Filesystem>* out);
  ~Filesystem();  // stops the ingest and read-ahead workers (spooled files stay in the spool)
  Filesystem(const Filesystem&) = delete;
  Filesystem& operator=(const Filesystem&) = delete;

  // ---- Namespace ----
  int Lookup(uint64_t parent, const std::string& name, struct stat* st);
  int GetAttr(uint64_t ino, uint64_t fh, struct stat* st);
  int SetAttr(uint64_t ino, uint64_t fh, const SetAttrRequest& req, struct stat* st);
  int Mkdir(uint64_t parent, const std::string& name, uint32_t mode, uint32_t uid, uint32_t gid, struct stat* st);
  int Rmdir(uint64_t parent, const std::string& name);
  int Unlink(uint64_t parent, const std::string& name);
  int Rename(uint64_t parent, const std::string& name, uint64_t new_parent, const std::string& new_name,
             unsigned flags);
  int Symlink(const std::string& target, uint64_t parent, const std::string& name, uint32_t uid, uint32_t gid,
              struct stat* st);
  int Readlink(uint64_t ino, std::string* target);
  int ReadDir(uint64_t ino, std::vector<DirListEntry>* entries);
  int StatFs(struct statvfs* sv);

  // ---- Files ----
  // `flags` as for open(2). *fh identifies the open file until Release.
  int Create(uint64_t parent, const std::string& name, uint32_t mode, int flags, uint32_t uid, uint32_t gid,
             struct stat* st, uint64_t* fh);
  int Open(uint64_t ino, int flags, uint64_t* fh, bool* keep_cache);
  int Read(uint64_t fh, uint64_t offset, size_t size, char* out, size_t* read_bytes);
  // Writes go to the spool file BeginWrite returns (any offset,
  // concurrently; hold `file` until EndWrite); EndWrite records whether the
  // bytes landed. A failed write makes the version being written incomplete:
  // it is never committed, and after its last writer closes, the file is its
  // last complete version again.
  int BeginWrite(uint64_t fh, SpoolFile* file);
  void EndWrite(uint64_t fh, int err);  // err: 0, or the write's errno
  // Makes the file's current content a complete, durable version (it
  // survives a crash and a power loss); the errno of a write into it that
  // failed (ENOSPC, EIO), if one did.
  int Fsync(uint64_t fh);
  int FsyncDir();
  // close(2) of a descriptor: the last writer's makes what it wrote a
  // complete version, queued for ingest; the errno of a failed write into it.
  int Flush(uint64_t fh);
  // Closing the last writer makes what it wrote a complete version, queued
  // for ingest; the errno of a failed write (the version was discarded).
  int Release(uint64_t fh);

  // ---- Extended attributes (user.tpde.*, read-only) ----
  int GetXattr(uint64_t ino, const std::string& name, std::string* value);
  int ListXattr(uint64_t ino, std::vector<std::string>* names);

  // The kernel's cached pages and size of a file whose version was
  // discarded are wrong, and with the writeback cache the kernel trusts its
  // own size: the file gets a new inode generation (the kernel then drops
  // its inode at the next lookup) and `invalidate` is called, outside any
  // lock, with its inode and name, to drop the cached name and pages.
  struct Invalidation {
    uint64_t ino, parent;
    std::string name;
  };
  void SetCacheInvalidator(std::function<void(const Invalidation&)> invalidate);
  // The generation of `ino` to report in FUSE entries.
  uint64_t Generation(uint64_t ino);

  // ---- Control ----
  // Waits until every version closed or fsynced before the call is committed
  // (tpdectl flush); versions closed later are not waited for. IOError if
  // one failed to ingest, or if StopWaiters was called.
  Status FlushAll();
  // Wakes every FlushAll with an error (the daemon is stopping).
  void StopWaiters();
  // Whether the spool holds content of `ino` (being written or not yet
  // committed).
  bool IsSpooled(uint64_t ino);
  struct Counters {
    uint64_t spooled_files = 0;
    uint64_t ingests_done = 0;
    uint64_t ingest_errors = 0;
    uint64_t cache_bytes = 0, cache_hits = 0, cache_misses = 0;
    uint64_t chunk_decoded_bytes = 0;  // chunks decoded one at a time, on the CPU
    uint64_t batch_decoded_bytes = 0;  // read-ahead batches given to the store's batched decoder (the GPU's)
  };
  Counters counters();

 private:
  struct SpoolState;
  struct Handle;

  explicit Filesystem(Store* store, const FsOptions& options);
  Status Recover();
  void StatFromInode(const Inode& n, struct stat* st);
  // Overlays the spool's size and mtime.
  void OverlaySpool(uint64_t ino, struct stat* st) TPDE_REQUIRES(mu_);
  // Spool transitions (SpoolState in filesystem.cc). OpenDraft
  // gives the file a draft to write (creating its state if needed), empty if
  // `truncate`; MakeDraftPrivate copies a draft that shares the sealed file;
  // SealDraft makes the draft the newest complete version; CloseDraft ends
  // the draft when its last writer goes; RemoveVersion deletes a sealed
  // version's files unless an ingest is reading them.
  int OpenDraft(uint64_t ino, bool truncate, bool new_file, SpoolState** state) TPDE_REQUIRES(mu_);
  int MakeDraftPrivate(uint64_t ino, SpoolState* sp) TPDE_REQUIRES(mu_);
  int SealDraft(uint64_t ino, SpoolState* sp) TPDE_REQUIRES(mu_);
  int CloseDraft(uint64_t ino, SpoolState* sp) TPDE_REQUIRES(mu_);
  void RemoveVersion(uint64_t ino, SpoolState* sp, uint64_t seq) TPDE_REQUIRES(mu_);
  void FlushInvalidations();
  void Enqueue(uint64_t ino, bool delay = true) TPDE_REQUIRES(mu_);
  void MaybeDropSpool(uint64_t ino) TPDE_REQUIRES(mu_);
  void IngestLoop();
  void GcLoop();
  void RequestGc();
  void ReadaheadLoop();
  int ReadCommitted(Handle* h, uint64_t offset, size_t size, char* out, size_t* read_bytes);
  ChunkCache::Chunk GetChunk(const std::shared_ptr<FileReader>& reader, uint32_t chunk, int* err);

  Store* store_;
  FsOptions options_;
  Spool spool_;
  ChunkCache cache_;

  std::mutex mu_;
  std::condition_variable ingest_cv_;  // work for ingest workers
  std::condition_variable idle_cv_;    // an ingest finished
  std::condition_variable writes_cv_;  // a file's writes in flight reached 0
  std::function<void(const Invalidation&)> invalidate_;
  std::vector<Invalidation> pending_invalidations_;
  std::unordered_map<uint64_t, uint64_t> generations_;  // inodes whose kernel inode was dropped
  std::unordered_set<uint64_t> doomed_ TPDE_GUARDED_BY(mu_);  // new files whose only version failed, removal not yet committed
  uint64_t next_seq_ TPDE_GUARDED_BY(mu_) = 1;  // sequence of the next sealed version, across all files
  std::unordered_map<uint64_t, std::unique_ptr<SpoolState>> spooled_;
  // Inodes with open handles: their attributes outlive an unlink until the
  // last close (the kernel asks for them, without a handle, at close).
  struct OpenInode {
    uint32_t handles = 0;
    Inode inode;
  };
  std::unordered_map<uint64_t, OpenInode> open_inodes_;
  void TrackOpen(const Inode& n) TPDE_REQUIRES(mu_);
  void TrackClose(uint64_t ino) TPDE_REQUIRES(mu_);
  struct QueuedIngest {
    uint64_t ino;
    std::chrono::steady_clock::time_point not_before;
  };
  std::deque<QueuedIngest> ingest_queue_;
  bool stopping_ = false;
  bool stop_waiters_ = false;
  uint64_t ingests_done_ = 0, ingest_errors_ = 0;
  std::vector<std::thread> ingest_workers_;

  // Ingests and deletions wake the collector, which demotes the previous
  // keyframe to a delta, re-bases dependents of deleted references and
  // reclaims their space in the background, at lower CPU priority.
  bool gc_needed_ TPDE_GUARDED_BY(mu_) = false;
  std::condition_variable gc_cv_;
  std::thread gc_thread_;

  struct ReadaheadJob {
    std::shared_ptr<FileReader> reader;
    uint32_t chunk;
  };
  // Decodes `jobs` (chunks of one delta-coded file) as one batch of the
  // store's batched decoder and caches them.
  void ReadaheadBatch(const std::vector<ReadaheadJob>& jobs);
  std::atomic<uint64_t> chunk_decoded_bytes_{0}, batch_decoded_bytes_{0};
  std::mutex ra_mu_;
  std::condition_variable ra_cv_;
  std::deque<ReadaheadJob> ra_queue_;
  std::vector<std::thread> ra_workers_;
};

}  // namespace tpde
