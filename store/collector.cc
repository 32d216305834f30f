// The collector (store/collector.h): demoting keyframes to reverse deltas,
// re-basing the dependents of detached objects, and reclaiming their space.
//
// Chains run backwards in time, as in RCS and Git's packs, which keep the
// newest revision whole (W. F. Tichy, "RCS — A System for Version Control",
// Software: Practice and Experience 15(7), 1985): the newest version of a
// file is a keyframe, each older version a delta against the next newer one.
// Reading the newest version (resume) decodes keyframe chunks only, deleting
// the oldest (checkpoint rotation) frees its payloads with no re-encoding,
// and deleting a middle version re-bases its one older neighbour.
#include "store/collector.h"

#include <fmt/format.h>

#include <algorithm>

#include "store/object_writer.h"
#include "store/rocks_status.h"
#include "store/store_impl.h"

namespace tpde {

Status Collector::Collect() {
  std::lock_guard<std::mutex> lock(mu_);
  // Reclaim first: it gives space back, and on a full disk it must not wait
  // behind a re-encode that fails for lack of that space.
  Status first_error = CompactFreed();
  if (!store_->write_guard->HasRoom()) {
    // Demotions and re-bases write whole versions: they wait until writes
    // are accepted and the reserve is back, so that they never take the
    // room deletions need. The caller retries.
    uint64_t demotions = 0;
    std::vector<uint64_t> detached;
    TPDE_RETURN_IF_ERROR(store_->catalog->CountPendingDemotions(nullptr, &demotions));
    TPDE_RETURN_IF_ERROR(store_->catalog->DetachedObjects(&detached));
    if (first_error.ok() && (demotions > 0 || !detached.empty())) {
      first_error = Status::NoSpace(fmt::format("{} demotions and {} re-bases wait for free space", demotions,
                                                detached.size()));
    }
    return first_error;
  }
  const Status demoted = DemotePending();
  const Status rebased = RebaseDetached();
  const Status reclaimed = CompactFreed();  // what the demotions and re-bases freed
  for (const Status* s : {&demoted, &rebased, &reclaimed}) {
    if (first_error.ok()) first_error = *s;
  }
  return first_error;
}

bool Collector::RoomToRelocate(rocksdb::ColumnFamilyHandle* lane) const {
  uint64_t blob_bytes = 0;
  if (!store_->db->GetIntProperty(lane, rocksdb::DB::Properties::kTotalBlobFileSize, &blob_bytes)) return false;
  // At worst every live blob of the lane is rewritten once.
  return store_->write_guard->HasRoom() && store_->write_guard->FreeBytes() >= 2 * blob_bytes;
}

Status Collector::CompactFreed() {
  Catalog& catalog = *store_->catalog;
  std::vector<Catalog::FreedRange> ranges = catalog.TakeFreedRanges();
  // One compaction per lane over the span of its freed ranges: compaction
  // drops the deleted keys, which turns their blob files into garbage that
  // RocksDB deletes. RocksDB releases the replaced LSM version (and with it
  // the files) just after CompactRange returns, so disk usage falls a moment
  // later. A lane whose compaction failed keeps its ranges for the next run.
  Status first_error;
  for (uint8_t lane = 0; lane < kChunkLanes; ++lane) {
    std::string lo, hi;
    for (const auto& r : ranges) {
      if (r.lane != lane) continue;
      if (lo.empty() || r.begin < lo) lo = r.begin;
      if (hi.empty() || r.end > hi) hi = r.end;
    }
    if (lo.empty()) continue;
    rocksdb::CompactRangeOptions co;
    co.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
    if (lane == 0 && !RoomToRelocate(catalog.lanes()[0])) {
      // Blob garbage collection rewrites the live blobs of lane 0's older
      // blob files: on a disk short of that much space it would fill the
      // disk and stop the store. Without it the compaction still drops the
      // freed keys, and blob files left with no live blob are deleted.
      co.blob_garbage_collection_policy = rocksdb::BlobGarbageCollectionPolicy::kDisable;
    }
    rocksdb::Slice b(lo), e(hi);
    Status s = store_->write_guard->Run(fmt::format("compacting chunk lane {}", lane),
                                        [&] { return store_->db->CompactRange(co, catalog.lanes()[lane], &b, &e); });
    if (s.ok()) continue;
    if (first_error.ok()) first_error = s;
    std::vector<Catalog::FreedRange> keep;
    for (const auto& r : ranges) {
      if (r.lane == lane) keep.push_back(r);
    }
    catalog.ReturnFreedRanges(std::move(keep));
  }
  return first_error;
}

Status Collector::Rebase(uint64_t object, uint64_t old_reference, uint64_t new_reference, bool* swapped) {
  Store::Impl& im = *store_;
  Catalog& catalog = *im.catalog;
  *swapped = false;
  std::unique_ptr<FileReader> self;
  TPDE_RETURN_IF_ERROR(im.OpenObjectReader(object, &self));
  const uint32_t old_generation = self->manifest().generation;
  const uint8_t old_lane = self->manifest().lane;
  Manifest m = self->manifest();
  m.generation = old_generation + 1;
  m.reference = 0;
  std::unique_ptr<FileReader> ref_reader;
  if (new_reference != 0) {
    std::shared_ptr<const Manifest> ref;
    TPDE_RETURN_IF_ERROR(catalog.GetManifest(new_reference, &ref));
    if (MatchSegments(m.kind, m.file_bytes, &m.segments, *ref) > 0) {
      TPDE_RETURN_IF_ERROR(im.OpenObjectReader(new_reference, &ref_reader));
      m.reference = new_reference;
    }
  }
  if (m.reference == 0) {
    for (auto& s : m.segments) s.ref_segment = kNoSegment;
  }
  // EncodeObject asks for whole chunks: decode them in parallel.
  const SourceFn source = [&](uint64_t offset, uint64_t size, uint8_t* dst) {
    return self->ReadChunksParallel(offset, size, dst, im.background_pool.get());
  };
  rocksdb::WriteBatch batch;
  const uint64_t expected_hash = m.file_hash;
  auto drop_staged = [&] { return im.DropStaged(m.lane, object, m.generation); };
  Status es = EncodeObject(&im, im.background_pool.get(), &m, ref_reader.get(), source, &batch);
  if (!es.ok()) {
    drop_staged();  // best effort: Open deletes leftovers too
    return es;
  }
  if (m.file_hash != expected_hash) {
    TPDE_RETURN_IF_ERROR(drop_staged());
    return Status::Corruption(fmt::format("object {}: content changed while re-basing", object));
  }

  std::unique_lock<std::mutex> lock(im.commit_mu);
  std::shared_ptr<const Manifest> now;
  Status s = catalog.GetManifest(object, &now);
  bool ref_live = true;
  if (m.reference != 0) {
    std::shared_ptr<const Manifest> r;
    ref_live = catalog.GetManifest(m.reference, &r).ok();
  }
  if (!s.ok() || now->generation != old_generation || now->reference != old_reference || !ref_live) {
    // Freed or re-based meanwhile, or the new reference is gone: drop what we staged.
    lock.unlock();
    return drop_staged();
  }
  catalog.PutManifest(&batch, m);
  catalog.DropGeneration(&batch, old_lane, object, old_generation);
  catalog.MoveReferenceEdge(&batch, object, old_reference, m.reference);
  catalog.ClearDemotion(&batch, object);  // a demotion, if queued, is done
  TPDE_RETURN_IF_ERROR(im.Commit(&batch));  // Commit forgets the cached manifest
  *swapped = true;
  return Status::OK();
}

// ---- Reverse-delta chains ---------------------------------------------------

Status Collector::FindNeighbours(uint64_t parent, std::string_view name, uint64_t ino,
                                 std::shared_ptr<const Manifest>* older, std::shared_ptr<const Manifest>* newer) {
  const Namespace& ns = store_->ns;
  older->reset();
  newer->reset();
  if (parent == kRootInode) return Status::OK();
  Inode parent_dir;
  TPDE_RETURN_IF_ERROR(ns.GetInode(parent, &parent_dir));
  // The sibling directories. A malformed entry among them only costs the
  // new version its neighbours (it stays a keyframe), never the ingest.
  std::vector<DirEntry> siblings;
  if (!ns.ReadDir(parent_dir.parent, &siblings).ok()) return Status::OK();
  uint64_t older_ino = 0, newer_ino = ~uint64_t{0};
  for (const DirEntry& e : siblings) {
    if (e.type != InodeType::kDirectory || e.ino == parent) continue;
    Inode f;
    if (!ns.Lookup(e.ino, name, &f).ok() || f.type != InodeType::kFile || f.object == 0) continue;
    if (f.ino < ino ? f.ino <= older_ino : f.ino >= newer_ino) continue;
    std::shared_ptr<const Manifest> m;
    if (!store_->catalog->GetManifest(f.object, &m).ok()) continue;
    if (f.ino < ino) {
      older_ino = f.ino;
      *older = m;
    } else {
      newer_ino = f.ino;
      *newer = m;
    }
  }
  return Status::OK();
}

Status Collector::DemotePending() {
  Store::Impl& im = *store_;
  Catalog& catalog = *im.catalog;
  std::vector<std::pair<uint64_t, uint64_t>> queue;  // (keyframe, successor)
  TPDE_RETURN_IF_ERROR(catalog.PendingDemotions(&queue));
  for (const auto& [object, successor] : queue) {
    rocksdb::WriteBatch done;
    catalog.ClearDemotion(&done, object);
    // Demote only a keyframe onto a live successor it shares segments with
    // (otherwise the re-encode would produce the same keyframe), and only
    // while the longest chain through it stays within max_chain_depth deltas:
    // a run that keeps every checkpoint gets a keyframe every
    // max_chain_depth + 1 versions (docs/architecture.md, "Depth bound").
    std::shared_ptr<const Manifest> m, next;
    bool demote = catalog.GetManifest(object, &m).ok() && m->reference == 0 &&
                  catalog.GetManifest(successor, &next).ok() && !catalog.IsDetached(successor);
    if (demote) {
      std::vector<Segment> segments = m->segments;
      demote = MatchSegments(m->kind, m->file_bytes, &segments, *next) > 0;
    }
    if (demote) {
      int below = 0, above = 0;
      TPDE_RETURN_IF_ERROR(catalog.DepthBelow(object, &below));
      TPDE_RETURN_IF_ERROR(catalog.ChainLength(successor, &above));
      demote = below + 1 + above <= im.options.max_chain_depth;
    }
    if (!demote) {
      TPDE_RETURN_IF_ERROR(im.Commit(&done, /*sync=*/false));
      continue;
    }
    bool swapped = false;
    Status s = Rebase(object, 0, successor, &swapped);
    if (!s.ok()) return s.WithContext(fmt::format("demoting object {}", object));
    if (!swapped) TPDE_RETURN_IF_ERROR(im.Commit(&done, /*sync=*/false));
  }
  return Status::OK();
}

Status Collector::RebaseDetached() {
  Store::Impl& im = *store_;
  Catalog& catalog = *im.catalog;
  std::vector<uint64_t> detached;
  TPDE_RETURN_IF_ERROR(catalog.DetachedObjects(&detached));
  for (uint64_t x : detached) {
    std::shared_ptr<const Manifest> xm;
    Status s = catalog.GetManifest(x, &xm);
    if (s.IsNotFound()) continue;  // freed by a cascade
    TPDE_RETURN_IF_ERROR(s);
    // The nearest ancestor that is still live takes over as reference.
    uint64_t target = xm->reference;
    while (target != 0 && catalog.IsDetached(target)) {
      std::shared_ptr<const Manifest> tm;
      TPDE_RETURN_IF_ERROR(catalog.GetManifest(target, &tm));
      target = tm->reference;
    }
    std::vector<uint64_t> dependents;
    TPDE_RETURN_IF_ERROR(catalog.Dependents(x, &dependents));
    for (uint64_t d : dependents) {
      bool swapped = false;
      TPDE_RETURN_IF_ERROR(Rebase(d, x, target, &swapped).WithContext(fmt::format("re-basing object {}", d)));
    }
    std::lock_guard<std::mutex> lock(im.commit_mu);
    bool has = false;
    TPDE_RETURN_IF_ERROR(catalog.HasDependents(x, 0, &has));
    if (!has && catalog.IsDetached(x)) {
      rocksdb::WriteBatch b;
      TPDE_RETURN_IF_ERROR(catalog.FreeObject(&b, x));
      TPDE_RETURN_IF_ERROR(im.Commit(&b));
    }
  }
  return Status::OK();
}

}  // namespace tpde
