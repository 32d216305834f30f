// Catalog: the store's objects — manifests, the reference graph (which
// object is the delta reference of which), detached objects, demotions
// queued for the collector, and the chunk lanes that hold the payloads of
// each (object, generation). Keys and values: store/keys.h, docs/format.md.
//
// Reads run on any thread, at the latest state or at a RocksDB snapshot;
// manifests read at the latest state are cached (content never changes: a
// re-base writes a new generation, and Committed forgets the old manifest
// once the batch is in).
// Mutations only add to a WriteBatch that the Store commits under its
// commit lock together with the namespace changes of the same operation;
// the ones that read the graph to decide (ReleaseObject, FreeObject) must
// run under that lock, so the graph cannot change between read and commit.
//
// Errors: NotFound for a missing object, Corruption for a malformed record
// or a reference graph that loops or runs deeper than 64, IOError from
// RocksDB.
// Thread-safety: any method may be called from any thread at any time,
// except ReleaseObject and FreeObject, which need the commit lock held
// (TPDE_REQUIRES). The DB and column families must outlive the catalog.
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "codec/status.h"
#include "codec/thread_annotations.h"
#include "store/manifest.h"

namespace tpde {

struct CatalogFamilies {
  rocksdb::ColumnFamilyHandle* objects = nullptr;   // object id -> manifest
  rocksdb::ColumnFamilyHandle* deps = nullptr;      // reference + dependent -> ""
  rocksdb::ColumnFamilyHandle* detached = nullptr;  // object id -> ""
  rocksdb::ColumnFamilyHandle* pending = nullptr;   // keyframe -> its successor
  ChunkLanes lanes{};                               // chunk payloads
};

// Totals over every object (tpdectl stats).
struct CatalogTotals {
  uint64_t stored_bytes = 0;  // payloads + manifests
  uint64_t detached_objects = 0;
  uint64_t detached_bytes = 0;  // payloads of detached objects
  uint64_t pending_demotions = 0;
};

class Catalog {
 public:
  // `commit_mu` is the Store's commit lock (see the header comment).
  Catalog(rocksdb::DB* db, const CatalogFamilies& families, std::mutex* commit_mu);
  Catalog(const Catalog&) = delete;
  Catalog& operator=(const Catalog&) = delete;

  const ChunkLanes& lanes() const { return f_.lanes; }

  // ---- Reads (snap == nullptr: the latest state, cached) ----
  Status GetManifest(uint64_t object, std::shared_ptr<const Manifest>* out,
                     const rocksdb::Snapshot* snap = nullptr);
  // Manifests of `object` and of each reference down to its keyframe
  // (chain[0] is `object`'s).
  Status GetChain(uint64_t object, std::vector<std::shared_ptr<const Manifest>>* chain,
                  const rocksdb::Snapshot* snap = nullptr);
  // Deltas between `object` and its keyframe.
  Status ChainLength(uint64_t object, int* length);
  // The longest chain of dependents hanging below `object` (0: none).
  Status DepthBelow(uint64_t object, int* depth);
  // The objects that use `object` as reference.
  Status Dependents(uint64_t object, std::vector<uint64_t>* out);
  // True if some object other than `except` uses `object` as reference.
  Status HasDependents(uint64_t object, uint64_t except, bool* has);
  // True if the reference edge `reference` -> `dependent` is recorded.
  bool HasReferenceEdge(uint64_t reference, uint64_t dependent);
  // True if `object` is no longer named by an inode but kept as a reference.
  bool IsDetached(uint64_t object);
  // Detached objects, in id order.
  Status DetachedObjects(std::vector<uint64_t>* out);
  // Queued demotions: (keyframe, successor) in keyframe order.
  Status PendingDemotions(std::vector<std::pair<uint64_t, uint64_t>>* out);
  // Calls fn(object id) for every object in id order until fn returns false.
  // A key that is not an object id is skipped and reported (Corruption)
  // once the scan is done.
  Status ForEachObject(const std::function<bool(uint64_t object)>& fn);
  Status Totals(const rocksdb::Snapshot* snap, CatalogTotals* out);
  // The keyframes waiting to become deltas (one key each: cheap).
  Status CountPendingDemotions(const rocksdb::Snapshot* snap, uint64_t* count);
  // The largest object id in use, by a manifest or by staged payloads.
  uint64_t LastObject();

  // ---- Mutations, into a batch the Store commits ----
  // Writes `m`'s manifest; *encoded (if not null) gets its bytes.
  void PutManifest(rocksdb::WriteBatch* b, const Manifest& m, std::string* encoded = nullptr);
  // Replaces the reference edge of `object` (0: none).
  void MoveReferenceEdge(rocksdb::WriteBatch* b, uint64_t object, uint64_t old_reference, uint64_t new_reference);
  // Queues `keyframe` to be demoted to a delta against `successor`.
  void QueueDemotion(rocksdb::WriteBatch* b, uint64_t keyframe, uint64_t successor);
  void ClearDemotion(rocksdb::WriteBatch* b, uint64_t keyframe);
  // The inode no longer names `object`: free it, or detach it while other
  // objects still use it as reference.
  Status ReleaseObject(rocksdb::WriteBatch* b, uint64_t object) TPDE_REQUIRES(*commit_mu_);
  // Deletes `object` (manifest, payloads, its reference edge, queue entries)
  // and cascades to a detached reference left without dependents.
  Status FreeObject(rocksdb::WriteBatch* b, uint64_t object) TPDE_REQUIRES(*commit_mu_);
  // Deletes the payloads of (object, generation) in `lane`; once the batch
  // commits, the key range goes to TakeFreedRanges (see Committed).
  void DropGeneration(rocksdb::WriteBatch* b, uint8_t lane, uint64_t object, uint32_t generation);
  // Store::Impl::Commit calls this once `b` is in the store: manifests the
  // batch wrote or deleted leave the cache (a read between the batch's
  // making and its commit may have cached the old one), and the chunk ranges
  // it deleted are recorded for TakeFreedRanges.
  void Committed(const rocksdb::WriteBatch& b);
  // Drops the payloads no manifest names (staged by an ingest or re-base
  // that never committed); *dropped is how many generations. Best effort:
  // a lane that cannot be read to its end (damage, which Verify reports) is
  // scanned as far as it reads.
  Status DropOrphanGenerations(rocksdb::WriteBatch* b, int* dropped);
  // The manifest of `object` changed or is gone: no cached copy survives,
  // and none read before this call is cached after it.
  void ForgetManifest(uint64_t object);

  // ---- Reclaim ----
  struct FreedRange {
    uint8_t lane;
    std::string begin, end;
  };
  // The chunk key ranges deleted by committed batches so far, handed over to
  // be compacted away.
  std::vector<FreedRange> TakeFreedRanges();
  // Gives back ranges whose compaction failed, for the next round.
  void ReturnFreedRanges(std::vector<FreedRange> ranges);

  // ---- Lanes ----
  // Lanes 1.. are held by one large-object writer at a time (lane 0 is
  // shared by small objects, which commit through the WAL). Blocks while all
  // are held.
  uint8_t AcquireLane();
  void ReleaseLane(uint8_t lane);

 private:
  rocksdb::DB* const db_;
  const CatalogFamilies f_;
  std::mutex* const commit_mu_;

  std::mutex cache_mu_;
  std::map<uint64_t, std::shared_ptr<const Manifest>> manifest_cache_ TPDE_GUARDED_BY(cache_mu_);
  // Bumped by every ForgetManifest: a manifest read from the database before
  // an invalidation must not be cached after it.
  uint64_t cache_epoch_ TPDE_GUARDED_BY(cache_mu_) = 0;

  std::mutex freed_mu_;
  std::vector<FreedRange> freed_ranges_ TPDE_GUARDED_BY(freed_mu_);

  std::mutex lane_mu_;
  std::condition_variable lane_cv_;
  uint32_t busy_lanes_ TPDE_GUARDED_BY(lane_mu_) = 0;  // bit i: lane i is held
};

}  // namespace tpde
