// Releasing, freeing and re-basing objects; Store::CollectGarbage.
#include <fmt/format.h>

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
  b->DeleteRange(chunks_cf, keys::ChunkPrefix(object, m->generation), keys::ChunkPrefix(object, m->generation + 1));
  b->Delete(detached_cf, keys::U64(object));
  ForgetManifest(object);
  freed_ranges.emplace_back(keys::ChunkPrefix(object, m->generation), keys::ChunkPrefix(object, m->generation + 1));
  if (m->reference == 0) return Status::OK();
  b->Delete(deps_cf, keys::Dep(m->reference, object));
  std::string v;
  const bool ref_detached = db->Get(rocksdb::ReadOptions(), detached_cf, keys::U64(m->reference), &v).ok();
  if (!ref_detached) return Status::OK();
  bool has = false;
  TPDE_RETURN_IF_ERROR(HasDependents(m->reference, object, &has));
  return has ? Status::OK() : FreeObject(b, m->reference);
}

void Store::Impl::CompactFreed() {
  std::vector<std::pair<std::string, std::string>> ranges;
  {
    std::lock_guard<std::mutex> lock(commit_mu);
    ranges.swap(freed_ranges);
  }
  for (const auto& [begin, end] : ranges) {
    rocksdb::Slice b(begin), e(end);
    db->CompactRange(rocksdb::CompactRangeOptions(), chunks_cf, &b, &e);  // best effort: space, not correctness
  }
}

Status Store::Impl::Rebase(uint64_t object, uint64_t old_reference, uint64_t new_reference) {
  std::unique_ptr<FileReader> self;
  TPDE_RETURN_IF_ERROR(OpenObjectReader(object, &self));
  const uint32_t old_generation = self->manifest().generation;
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
  ChunkScratch scratch;
  const SourceFn source = [&](uint64_t offset, uint64_t size, uint8_t* dst) {
    uint64_t got = 0;
    TPDE_RETURN_IF_ERROR(self->Read(offset, size, dst, &got, &scratch));
    return got == size ? Status::OK() : Status::Corruption("object shorter than its manifest");
  };
  rocksdb::WriteBatch batch;
  const uint64_t expected_hash = m.file_hash;
  TPDE_RETURN_IF_ERROR(EncodeObject(this, &m, ref_reader.get(), source, &batch));
  if (m.file_hash != expected_hash) {
    return Status::Corruption(fmt::format("object {}: content changed while re-basing", object));
  }

  std::lock_guard<std::mutex> lock(commit_mu);
  std::shared_ptr<const Manifest> now;
  Status s = GetManifest(object, &now);
  if (!s.ok() || now->generation != old_generation || now->reference != old_reference) {
    // Freed or re-based meanwhile: drop what we staged.
    rocksdb::WriteBatch drop;
    drop.DeleteRange(chunks_cf, keys::ChunkPrefix(object, m.generation), keys::ChunkPrefix(object, m.generation + 1));
    return Commit(&drop);
  }
  std::string encoded;
  SerializeManifest(m, &encoded);
  batch.Put(objects_cf, keys::U64(object), encoded);
  batch.DeleteRange(chunks_cf, keys::ChunkPrefix(object, old_generation), keys::ChunkPrefix(object, old_generation + 1));
  freed_ranges.emplace_back(keys::ChunkPrefix(object, old_generation), keys::ChunkPrefix(object, old_generation + 1));
  if (old_reference != 0) batch.Delete(deps_cf, keys::Dep(old_reference, object));
  if (m.reference != 0) batch.Put(deps_cf, keys::Dep(m.reference, object), "");
  TPDE_RETURN_IF_ERROR(Commit(&batch));
  ForgetManifest(object);
  return Status::OK();
}

Status Store::CollectGarbage() {
  Impl& im = *impl_;
  std::lock_guard<std::mutex> gc_lock(im.gc_mu);
  std::vector<uint64_t> detached;
  {
    std::unique_ptr<rocksdb::Iterator> it(im.db->NewIterator(rocksdb::ReadOptions(), im.detached_cf));
    for (it->SeekToFirst(); it->Valid(); it->Next()) detached.push_back(GetBigEndian64(it->key().ToStringView()));
    TPDE_RETURN_IF_ERROR(FromRocks(it->status(), "scanning detached objects"));
  }
  auto is_detached = [&](uint64_t object) {
    std::string v;
    return im.db->Get(rocksdb::ReadOptions(), im.detached_cf, keys::U64(object), &v).ok();
  };
  for (uint64_t x : detached) {
    std::shared_ptr<const Manifest> xm;
    Status s = im.GetManifest(x, &xm);
    if (s.IsNotFound()) continue;  // freed by a cascade
    TPDE_RETURN_IF_ERROR(s);
    // The nearest ancestor that is still live takes over as reference.
    uint64_t target = xm->reference;
    while (target != 0 && is_detached(target)) {
      std::shared_ptr<const Manifest> tm;
      TPDE_RETURN_IF_ERROR(im.GetManifest(target, &tm));
      target = tm->reference;
    }
    std::vector<uint64_t> dependents;
    {
      std::unique_ptr<rocksdb::Iterator> it(im.db->NewIterator(rocksdb::ReadOptions(), im.deps_cf));
      const std::string prefix = keys::U64(x);
      for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
        dependents.push_back(GetBigEndian64(it->key().ToStringView().substr(8)));
      }
      TPDE_RETURN_IF_ERROR(FromRocks(it->status(), "scanning references"));
    }
    for (uint64_t d : dependents) {
      TPDE_RETURN_IF_ERROR(im.Rebase(d, x, target).WithContext(fmt::format("re-basing object {}", d)));
    }
    std::lock_guard<std::mutex> lock(im.commit_mu);
    bool has = false;
    TPDE_RETURN_IF_ERROR(im.HasDependents(x, 0, &has));
    if (!has && is_detached(x)) {
      rocksdb::WriteBatch b;
      TPDE_RETURN_IF_ERROR(im.FreeObject(&b, x));
      TPDE_RETURN_IF_ERROR(im.Commit(&b));
    }
  }
  im.CompactFreed();
  return Status::OK();
}

}  // namespace tpde
