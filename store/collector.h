// Collector: the store's background work on its objects (internal to the
// store; Store::CollectGarbage runs it, tpded on its own thread).
//
//   demote    re-encode a keyframe queued by an ingest as a delta against
//             its successor (reverse-delta chains: the newest version stays
//             a keyframe), within the store's chain depth bound;
//   re-base   re-encode the dependents of a detached object (a deleted file
//             still used as reference) against its nearest live reference,
//             then free it;
//   reclaim   compact the chunk key ranges freed by committed batches, so
//             RocksDB deletes their blob files.
//
// Re-encoding runs on the store's background pool (nice 10) and commits by
// swapping in a new generation with one synced batch; the commit lock is
// held only for that swap, never while encoding. A crash at any point leaves
// either the old or the new generation (Open drops orphans) and a demotion
// still queued, which the next run does again.
//
// Thread-safety: Collect and Pause serialise on one mutex, so one run at a
// time and none while a verification holds Pause's lock; FindNeighbours
// may be called from any thread.
#pragma once

#include <memory>
#include <mutex>
#include <string_view>

#include "codec/status.h"
#include "codec/thread_annotations.h"
#include "store/manifest.h"
#include "store/store.h"

namespace tpde {

class Collector {
 public:
  explicit Collector(Store::Impl* store) : store_(store) {}
  Collector(const Collector&) = delete;
  Collector& operator=(const Collector&) = delete;

  // One full run: every queued demotion, every detached object, then the
  // freed ranges. Stops at the first error (the rest waits for the next run;
  // a failed lane's freed ranges are kept).
  Status Collect() TPDE_EXCLUDES(mu_);

  // Holds the collector off (no run starts or is under way) while alive.
  [[nodiscard]] std::unique_lock<std::mutex> Pause() TPDE_EXCLUDES(mu_) { return std::unique_lock<std::mutex>(mu_); }

  // The versions of file `name` (inode `ino`, in directory `parent`) in the
  // sibling directories of `parent` created just before and just after it
  // (inode numbers are handed out in creation order, which is training order
  // even when concurrent ingests commit out of order). Null where none.
  // Ingest uses it to queue the demotion of the predecessor.
  Status FindNeighbours(uint64_t parent, std::string_view name, uint64_t ino, std::shared_ptr<const Manifest>* older,
                        std::shared_ptr<const Manifest>* newer);

 private:
  Status DemotePending() TPDE_REQUIRES(mu_);
  Status RebaseDetached() TPDE_REQUIRES(mu_);
  // Re-encodes `object` against `new_reference` (0: keyframe) under a new
  // generation and commits the swap (which also clears a demotion queued for
  // `object`). If the object was freed or re-based meanwhile, or the new
  // reference freed, nothing is swapped and *swapped is false.
  Status Rebase(uint64_t object, uint64_t old_reference, uint64_t new_reference, bool* swapped) TPDE_REQUIRES(mu_);
  // Compacts the freed ranges so their blob files are released.
  Status CompactFreed() TPDE_REQUIRES(mu_);
  // Whether the disk has room for blob garbage collection of `lane` (its
  // live blobs rewritten): writes accepted, the reserve in place, and free
  // space for twice the lane's blob files.
  bool RoomToRelocate(rocksdb::ColumnFamilyHandle* lane) const;

  Store::Impl* const store_;
  std::mutex mu_;
};

}  // namespace tpde
