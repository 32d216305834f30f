// Store internals shared by store.cc, ingest.cc and collector.cc (not
// public). The namespace (inodes, dirents) is its own class
// (store/namespace.h), as are the readers (store/file_reader.h), the object
// encoder (store/object_writer.h) and the write guard; what stays here are
// the objects (manifests, references, lanes, generations) and the collector.
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "codec/thread_annotations.h"
#include "codec/thread_pool.h"
#include "store/file_reader.h"
#include "store/keys.h"
#include "store/manifest.h"
#include "store/namespace.h"
#include "store/rocks_status.h"
#include "store/store.h"
#include "store/write_guard.h"

namespace tpde {

struct Store::Impl {
  std::string dir;
  StoreOptions options;
  std::unique_ptr<rocksdb::Env> env;  // over StoreOptions::file_system, if given (outlives db)
  std::unique_ptr<rocksdb::DB> db;
  rocksdb::ColumnFamilyHandle* default_cf = nullptr;
  rocksdb::ColumnFamilyHandle* objects_cf = nullptr;
  rocksdb::ColumnFamilyHandle* deps_cf = nullptr;
  rocksdb::ColumnFamilyHandle* detached_cf = nullptr;
  rocksdb::ColumnFamilyHandle* pending_cf = nullptr;
  ChunkLanes lanes{};  // chunk payload column families (store/manifest.h)
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  Namespace ns;  // inodes and dirents
  std::shared_ptr<WriteGuard> write_guard;      // background errors, full disks
  // Three pools, so that reads never queue behind background work and the
  // OS schedules each at its own priority: reads (default priority), ingest
  // (options.ingest_nice), demotion and re-base (nice 10).
  std::unique_ptr<ThreadPool> pool;             // reads
  std::unique_ptr<ThreadPool> ingest_pool;      // ingest
  std::unique_ptr<ThreadPool> background_pool;  // demotion, re-base

  // Lanes 1.. are held by one large-object writer at a time (lane 0 is
  // shared by small objects, which commit through the WAL).
  std::mutex lane_mu;
  std::condition_variable lane_cv;
  uint32_t busy_lanes TPDE_GUARDED_BY(lane_mu) = 0;  // bit i: lane i is held
  uint8_t AcquireLane();
  void ReleaseLane(uint8_t lane);

  std::mutex commit_mu;  // serialises every namespace or object mutation
  std::atomic<uint64_t> next_inode{kRootInode + 1};
  std::atomic<uint64_t> next_object{1};
  uint64_t next_commit_seq TPDE_GUARDED_BY(commit_mu) = 1;

  std::mutex gc_mu;  // one CollectGarbage at a time: re-bases of one object never race

  std::mutex cache_mu;
  std::map<uint64_t, std::shared_ptr<const Manifest>> manifest_cache TPDE_GUARDED_BY(cache_mu);  // by object id
  // Bumped by every ForgetManifest: a manifest read from the database before
  // an invalidation must not be cached after it.
  uint64_t cache_epoch TPDE_GUARDED_BY(cache_mu) = 0;

  ~Impl();

  // ---- Reads (any thread) ----
  Status GetManifest(uint64_t object, std::shared_ptr<const Manifest>* out, const rocksdb::Snapshot* snap = nullptr);
  // Manifests of `object` and each reference down to its keyframe.
  Status GetChain(uint64_t object, std::vector<std::shared_ptr<const Manifest>>* chain,
                  const rocksdb::Snapshot* snap = nullptr);
  Status OpenObjectReader(uint64_t object, std::unique_ptr<FileReader>* reader);
  // Fills the content fields of `f` (not its path) for file inode `n`.
  Status FillFileStats(const Inode& n, FileStats* f, const rocksdb::Snapshot* snap);
  // The objects that use `object` as reference.
  Status Dependents(uint64_t object, std::vector<uint64_t>* out);
  // True if some object uses `object` as reference (ignoring `except`).
  Status HasDependents(uint64_t object, uint64_t except, bool* has);
  // True if `object` is no longer named by an inode but kept as a reference.
  bool IsDetached(uint64_t object);
  void ForgetManifest(uint64_t object);

  // ---- Mutations ----
  // The inode no longer names `object`: free it, or detach it if it is
  // still a reference of others.
  Status ReleaseObject(rocksdb::WriteBatch* b, uint64_t object) TPDE_REQUIRES(commit_mu);
  // Deletes `object` (manifest, chunks, its reference edge) and cascades to
  // a detached reference left without dependents.
  Status FreeObject(rocksdb::WriteBatch* b, uint64_t object) TPDE_REQUIRES(commit_mu);
  // Writes `b` atomically. Content commits (ingest, re-base, free) are
  // synced; namespace-only changes pass sync = false and become durable with
  // the next synced commit or SyncLog() (the WAL is ordered).
  Status Commit(rocksdb::WriteBatch* b, bool sync = true) TPDE_REQUIRES(commit_mu);
  // Chunk key ranges deleted by committed batches, compacted away later.
  struct FreedRange {
    uint8_t lane;
    std::string begin, end;
  };
  std::vector<FreedRange> freed_ranges TPDE_GUARDED_BY(commit_mu);
  void DropGeneration(rocksdb::WriteBatch* b, uint8_t lane, uint64_t object, uint32_t generation);
  // Compacts the freed ranges so their blob files are released. On an error
  // the ranges of the failed lane stay queued for the next call.
  Status CompactFreed();

  // Re-encodes `object` against `new_reference` (0: keyframe) under a new
  // generation on the background pool and commits the swap (which also
  // clears a demotion queued for `object`). If the object was freed or
  // re-based meanwhile, or the new reference freed, nothing is swapped and
  // *swapped is false. commit_mu must NOT be held.
  Status Rebase(uint64_t object, uint64_t old_reference, uint64_t new_reference, bool* swapped);

  // ---- Reverse-delta chains ----
  // The versions of file `name` (inode `ino`, in `parent`) in the sibling
  // directories of `parent` just before and just after it in creation order
  // (inode numbers are handed out in creation order, which is training order
  // even when concurrent ingests commit out of order). Null where none.
  Status FindNeighbours(uint64_t parent, std::string_view name, uint64_t ino, std::shared_ptr<const Manifest>* older,
                        std::shared_ptr<const Manifest>* newer);
  // Deltas between `object` and its keyframe.
  Status ChainLength(uint64_t object, int* length);
  // The longest chain of dependents hanging below `object` (0: none).
  Status DepthBelow(uint64_t object, int* depth);
  // Demotes every keyframe queued in `pending` to a delta against its
  // successor, where the depth bound allows.
  Status DemotePending();
};

}  // namespace tpde
