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
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "fusefs/chunk_cache.h"
#include "fusefs/spool.h"
#include "store/store.h"

namespace tpde {

inline constexpr size_t kAutoReadahead = ~size_t{0};

struct FsOptions {
  std::string spool_dir;               // local directory for files being written
  uint64_t cache_bytes = 256ull << 20; // decoded chunk cache
  size_t ingest_threads = 4;           // concurrent ingests (they share the store's pool)
  size_t readahead_chunks = kAutoReadahead;  // MiB decoded ahead of a sequential reader (auto: 2 per core)
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
  // Writes go to the spool descriptor (any offset, concurrently; valid
  // until Release); EndWrite records the change once bytes have landed.
  int BeginWrite(uint64_t fh, int* fd);
  void EndWrite(uint64_t fh);
  int Fsync(uint64_t fh);
  int FsyncDir();
  int Release(uint64_t fh);

  // ---- Extended attributes (user.tpde.*, read-only) ----
  int GetXattr(uint64_t ino, const std::string& name, std::string* value);
  int ListXattr(uint64_t ino, std::vector<std::string>* names);

  // ---- Control ----
  // Waits until every file closed so far is committed (tpdectl flush).
  Status FlushAll();
  struct Counters {
    uint64_t spooled_files = 0;
    uint64_t ingests_done = 0;
    uint64_t ingest_errors = 0;
    uint64_t cache_bytes = 0, cache_hits = 0, cache_misses = 0;
  };
  Counters counters();

 private:
  struct SpoolState;
  struct Handle;

  explicit Filesystem(Store* store, const FsOptions& options);
  Status Recover();
  void StatFromInode(const Inode& n, struct stat* st);
  // Overlays the spool's size and mtime (mu_ held).
  void OverlaySpool(uint64_t ino, struct stat* st);
  // Creates the spool copy of a file (mu_ held).
  int Materialize(uint64_t ino, bool truncate, SpoolState** state);
  void Enqueue(uint64_t ino, bool delay = true);  // mu_ held
  void MaybeDropSpool(uint64_t ino);  // mu_ held
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
  std::unordered_map<uint64_t, std::unique_ptr<SpoolState>> spooled_;
  // Inodes with open handles: their attributes outlive an unlink until the
  // last close (the kernel asks for them, without a handle, at close).
  struct OpenInode {
    uint32_t handles = 0;
    Inode inode;
  };
  std::unordered_map<uint64_t, OpenInode> open_inodes_;
  void TrackOpen(const Inode& n);   // mu_ held
  void TrackClose(uint64_t ino);    // mu_ held
  struct QueuedIngest {
    uint64_t ino;
    std::chrono::steady_clock::time_point not_before;
  };
  std::deque<QueuedIngest> ingest_queue_;
  bool stopping_ = false;
  uint64_t ingests_done_ = 0, ingest_errors_ = 0;
  std::vector<std::thread> ingest_workers_;

  // Ingests and deletions wake the collector, which demotes the previous
  // keyframe to a delta, re-bases dependents of deleted references and
  // reclaims their space in the background, at lower CPU priority.
  bool gc_needed_ = false;  // guarded by mu_
  std::condition_variable gc_cv_;
  std::thread gc_thread_;

  struct ReadaheadJob {
    std::shared_ptr<FileReader> reader;
    uint32_t chunk;
  };
  std::mutex ra_mu_;
  std::condition_variable ra_cv_;
  std::deque<ReadaheadJob> ra_queue_;
  std::vector<std::thread> ra_workers_;
};

}  // namespace tpde
