// The collector: demoting keyframes to reverse deltas, releasing, freeing
// and re-basing objects, and reclaiming their space (Store::CollectGarbage).
//
// Chains run backwards in time, as in RCS and Git's packs, which keep the
// newest revision whole (W. F. Tichy, "RCS — A System for Version Control",
// Software: Practice and Experience 15(7), 1985): the newest version of a
// file is a keyframe, each older version a delta against the next newer one.
// Reading the newest version (resume) decodes keyframe chunks only, deleting
// the oldest (checkpoint rotation) frees its payloads with no re-encoding,
// and deleting a middle version re-bases its one older neighbour.
#include <fmt/format.h>

#include <algorithm>

#include "store/coding.h"
#include "store/object_writer.h"
#include "store/store_impl.h"

namespace tpde {

Status Store::Impl::ReleaseObject(rocksdb::WriteBatch* b, uint64_t object) {
  bool has = false;
  TPDE_RETURN_IF_ERROR(HasDependents(object, 0, &has));
  if (has) {
    b->Put(detached_cf, keys::U64(object), "");  // still a reference: keep until re-based
    return Status::OK();
  }
  return FreeObject(b, object);
}

Status Store::Impl::FreeObject(rocksdb::WriteBatch* b, uint64_t object) {
  std::shared_ptr<const Manifest> m;
  TPDE_RETURN_IF_ERROR(GetManifest(object, &m));
  b->Delete(objects_cf, keys::U64(object));
  DropGeneration(b, m->lane, object, m->generation);
  b->Delete(detached_cf, keys::U64(object));
  b->Delete(pending_cf, keys::U64(object));
  ForgetManifest(object);
  if (m->reference == 0) return Status::OK();
  b->Delete(deps_cf, keys::Dep(m->reference, object));
  if (!IsDetached(m->reference)) return Status::OK();
  bool has = false;
  TPDE_RETURN_IF_ERROR(HasDependents(m->reference, object, &has));
  return has ? Status::OK() : FreeObject(b, m->reference);
}

Status Store::Impl::CompactFreed() {
  std::vector<FreedRange> ranges;
  {
    std::lock_guard<std::mutex> lock(commit_mu);
    ranges.swap(freed_ranges);
  }
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
    rocksdb::Slice b(lo), e(hi);
    Status s = FromRocks(db->CompactRange(co, lanes[lane], &b, &e), fmt::format("compacting chunk lane {}", lane));
    if (s.ok()) continue;
    if (first_error.ok()) first_error = s;
    std::lock_guard<std::mutex> lock(commit_mu);
    for (const auto& r : ranges) {
      if (r.lane == lane) freed_ranges.push_back(r);
    }
  }
  return first_error;
}

Status Store::Impl::Rebase(uint64_t object, uint64_t old_reference, uint64_t new_reference, bool* swapped) {
  *swapped = false;
  std::unique_ptr<FileReader> self;
  TPDE_RETURN_IF_ERROR(OpenObjectReader(object, &self));
  const uint32_t old_generation = self->manifest().generation;
  const uint8_t old_lane = self->manifest().lane;
  Manifest m = self->manifest();
  m.generation = old_generation + 1;
  m.reference = 0;
  std::unique_ptr<FileReader> ref_reader;
  if (new_reference != 0) {
    std::shared_ptr<const Manifest> ref;
    TPDE_RETURN_IF_ERROR(GetManifest(new_reference, &ref));
    if (MatchSegments(m.kind, m.file_bytes, &m.segments, *ref) > 0) {
      TPDE_RETURN_IF_ERROR(OpenObjectReader(new_reference, &ref_reader));
      m.reference = new_reference;
    }
  }
  if (m.reference == 0) {
    for (auto& s : m.segments) s.ref_segment = kNoSegment;
  }
  // EncodeObject asks for whole chunks: decode them in parallel.
  const SourceFn source = [&](uint64_t offset, uint64_t size, uint8_t* dst) {
    return self->ReadChunksParallel(offset, size, dst, background_pool.get());
  };
  rocksdb::WriteBatch batch;
  const uint64_t expected_hash = m.file_hash;
  auto drop_staged = [&] {
    rocksdb::WriteBatch drop;
    {
      std::lock_guard<std::mutex> lock(commit_mu);
      DropGeneration(&drop, m.lane, object, m.generation);
    }
    return Commit(&drop);
  };
  Status es = EncodeObject(this, background_pool.get(), &m, ref_reader.get(), source, &batch);
  if (!es.ok()) {
    drop_staged();  // best effort: Open deletes leftovers too
    return es;
  }
  if (m.file_hash != expected_hash) {
    TPDE_RETURN_IF_ERROR(drop_staged());
    return Status::Corruption(fmt::format("object {}: content changed while re-basing", object));
  }

  std::unique_lock<std::mutex> lock(commit_mu);
  std::shared_ptr<const Manifest> now;
  Status s = GetManifest(object, &now);
  bool ref_live = true;
  if (m.reference != 0) {
    std::shared_ptr<const Manifest> r;
    ref_live = GetManifest(m.reference, &r).ok();
  }
  if (!s.ok() || now->generation != old_generation || now->reference != old_reference || !ref_live) {
    // Freed or re-based meanwhile, or the new reference is gone: drop what we staged.
    lock.unlock();
    return drop_staged();
  }
  std::string encoded;
  SerializeManifest(m, &encoded);
  batch.Put(objects_cf, keys::U64(object), encoded);
  DropGeneration(&batch, old_lane, object, old_generation);
  if (old_reference != 0) batch.Delete(deps_cf, keys::Dep(old_reference, object));
  if (m.reference != 0) batch.Put(deps_cf, keys::Dep(m.reference, object), "");
  batch.Delete(pending_cf, keys::U64(object));  // a demotion, if queued, is done
  TPDE_RETURN_IF_ERROR(Commit(&batch));
  ForgetManifest(object);
  *swapped = true;
  return Status::OK();
}

// ---- Reverse-delta chains ---------------------------------------------------

Status Store::Impl::FindNeighbours(uint64_t parent, std::string_view name, uint64_t ino,
                                   std::shared_ptr<const Manifest>* older, std::shared_ptr<const Manifest>* newer) {
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
    if (!GetManifest(f.object, &m).ok()) continue;
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

Status Store::Impl::ChainLength(uint64_t object, int* length) {
  std::vector<std::shared_ptr<const Manifest>> chain;
  TPDE_RETURN_IF_ERROR(GetChain(object, &chain));
  *length = static_cast<int>(chain.size()) - 1;
  return Status::OK();
}

Status Store::Impl::DepthBelow(uint64_t object, int* depth) {
  *depth = 0;
  std::vector<uint64_t> level = {object};
  while (true) {
    std::vector<uint64_t> next, dependents;
    for (uint64_t o : level) {
      TPDE_RETURN_IF_ERROR(Dependents(o, &dependents));
      next.insert(next.end(), dependents.begin(), dependents.end());
    }
    if (next.empty()) return Status::OK();
    if (++*depth > 64) return Status::Corruption(fmt::format("object {}: reference graph too deep", object));
    level.swap(next);
  }
}

Status Store::Impl::DemotePending() {
  std::vector<std::pair<uint64_t, uint64_t>> queue;  // (keyframe, successor)
  {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), pending_cf));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      if (it->key().size() != 8 || it->value().size() != 8) continue;
      queue.emplace_back(GetBigEndian64(it->key().ToStringView()), GetBigEndian64(it->value().ToStringView()));
    }
    TPDE_RETURN_IF_ERROR(FromRocks(it->status(), "scanning pending demotions"));
  }
  for (const auto& [object, successor] : queue) {
    rocksdb::WriteBatch done;
    done.Delete(pending_cf, keys::U64(object));
    // Demote only a keyframe onto a live successor it shares segments with
    // (otherwise the re-encode would produce the same keyframe), and only
    // while the longest chain through it stays within max_chain_depth deltas:
    // a run that keeps every checkpoint gets a keyframe every
    // max_chain_depth + 1 versions.
    std::shared_ptr<const Manifest> m, next;
    bool demote = GetManifest(object, &m).ok() && m->reference == 0 && GetManifest(successor, &next).ok() &&
                  !IsDetached(successor);
    if (demote) {
      std::vector<Segment> segments = m->segments;
      demote = MatchSegments(m->kind, m->file_bytes, &segments, *next) > 0;
    }
    if (demote) {
      int below = 0, above = 0;
      TPDE_RETURN_IF_ERROR(DepthBelow(object, &below));
      TPDE_RETURN_IF_ERROR(ChainLength(successor, &above));
      demote = below + 1 + above <= options.max_chain_depth;
    }
    if (!demote) {
      TPDE_RETURN_IF_ERROR(Commit(&done, /*sync=*/false));
      continue;
    }
    bool swapped = false;
    Status s = Rebase(object, 0, successor, &swapped);
    if (!s.ok()) return s.WithContext(fmt::format("demoting object {}", object));
    if (!swapped) TPDE_RETURN_IF_ERROR(Commit(&done, /*sync=*/false));
  }
  return Status::OK();
}

Status Store::CollectGarbage() {
  Impl& im = *impl_;
  std::lock_guard<std::mutex> gc_lock(im.gc_mu);
  TPDE_RETURN_IF_ERROR(im.DemotePending());
  std::vector<uint64_t> detached;
  {
    std::unique_ptr<rocksdb::Iterator> it(im.db->NewIterator(rocksdb::ReadOptions(), im.detached_cf));
    for (it->SeekToFirst(); it->Valid(); it->Next()) detached.push_back(GetBigEndian64(it->key().ToStringView()));
    TPDE_RETURN_IF_ERROR(FromRocks(it->status(), "scanning detached objects"));
  }
  for (uint64_t x : detached) {
    std::shared_ptr<const Manifest> xm;
    Status s = im.GetManifest(x, &xm);
    if (s.IsNotFound()) continue;  // freed by a cascade
    TPDE_RETURN_IF_ERROR(s);
    // The nearest ancestor that is still live takes over as reference.
    uint64_t target = xm->reference;
    while (target != 0 && im.IsDetached(target)) {
      std::shared_ptr<const Manifest> tm;
      TPDE_RETURN_IF_ERROR(im.GetManifest(target, &tm));
      target = tm->reference;
    }
    std::vector<uint64_t> dependents;
    TPDE_RETURN_IF_ERROR(im.Dependents(x, &dependents));
    for (uint64_t d : dependents) {
      bool swapped = false;
      TPDE_RETURN_IF_ERROR(
          im.Rebase(d, x, target, &swapped).WithContext(fmt::format("re-basing object {}", d)));
    }
    std::lock_guard<std::mutex> lock(im.commit_mu);
    bool has = false;
    TPDE_RETURN_IF_ERROR(im.HasDependents(x, 0, &has));
    if (!has && im.IsDetached(x)) {
      rocksdb::WriteBatch b;
      TPDE_RETURN_IF_ERROR(im.FreeObject(&b, x));
      TPDE_RETURN_IF_ERROR(im.Commit(&b));
    }
  }
  return im.CompactFreed();
}

}  // namespace tpde
