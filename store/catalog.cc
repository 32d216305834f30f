#include "store/catalog.h"

#include <fmt/format.h>

#include <algorithm>

#include "store/coding.h"
#include "store/keys.h"
#include "store/rocks_status.h"

namespace tpde {

namespace {
constexpr size_t kMaxChain = 64;  // deeper than any depth bound allows: a damaged graph
}  // namespace

Catalog::Catalog(rocksdb::DB* db, const CatalogFamilies& families, std::mutex* commit_mu)
    : db_(db), f_(families), commit_mu_(commit_mu) {}

// ---- Reads ------------------------------------------------------------------

Status Catalog::GetManifest(uint64_t object, std::shared_ptr<const Manifest>* out, const rocksdb::Snapshot* snap) {
  uint64_t epoch = 0;
  if (snap == nullptr) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = manifest_cache_.find(object);
    if (it != manifest_cache_.end()) {
      *out = it->second;
      return Status::OK();
    }
    epoch = cache_epoch_;
  }
  rocksdb::ReadOptions ro;
  ro.snapshot = snap;
  std::string v;
  rocksdb::Status s = db_->Get(ro, f_.objects, keys::U64(object), &v);
  if (s.IsNotFound()) return Status::NotFound(fmt::format("object {}", object));
  TPDE_RETURN_IF_ERROR(FromRocks(s, "reading manifest"));
  auto m = std::make_shared<Manifest>();
  TPDE_RETURN_IF_ERROR(ParseManifest(v, m.get()).WithContext(fmt::format("object {}", object)));
  if (m->object_id != object) {
    return Status::Corruption(fmt::format("object {}: manifest names object {}", object, m->object_id));
  }
  if (snap == nullptr) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_epoch_ == epoch) manifest_cache_[object] = m;
  }
  *out = std::move(m);
  return Status::OK();
}

Status Catalog::GetChain(uint64_t object, std::vector<std::shared_ptr<const Manifest>>* chain,
                         const rocksdb::Snapshot* snap) {
  chain->clear();
  for (uint64_t o = object; o != 0;) {
    if (chain->size() > kMaxChain) {
      return Status::Corruption(fmt::format("object {}: reference chain too long", object));
    }
    std::shared_ptr<const Manifest> m;
    TPDE_RETURN_IF_ERROR(GetManifest(o, &m, snap));
    chain->push_back(m);
    o = m->reference;
  }
  return Status::OK();
}

Status Catalog::ChainLength(uint64_t object, int* length) {
  std::vector<std::shared_ptr<const Manifest>> chain;
  TPDE_RETURN_IF_ERROR(GetChain(object, &chain));
  *length = static_cast<int>(chain.size()) - 1;
  return Status::OK();
}

Status Catalog::DepthBelow(uint64_t object, int* depth) {
  *depth = 0;
  std::vector<uint64_t> level = {object};
  while (true) {
    std::vector<uint64_t> next, dependents;
    for (uint64_t o : level) {
      TPDE_RETURN_IF_ERROR(Dependents(o, &dependents));
      next.insert(next.end(), dependents.begin(), dependents.end());
    }
    if (next.empty()) return Status::OK();
    if (static_cast<size_t>(++*depth) > kMaxChain) {
      return Status::Corruption(fmt::format("object {}: reference graph too deep", object));
    }
    level.swap(next);
  }
}

Status Catalog::Dependents(uint64_t object, std::vector<uint64_t>* out) {
  out->clear();
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), f_.deps));
  const std::string prefix = keys::U64(object);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    out->push_back(GetBigEndian64(it->key().ToStringView().substr(8)));
  }
  return FromRocks(it->status(), "scanning references");
}

Status Catalog::HasDependents(uint64_t object, uint64_t except, bool* has) {
  std::vector<uint64_t> dependents;
  TPDE_RETURN_IF_ERROR(Dependents(object, &dependents));
  *has = std::any_of(dependents.begin(), dependents.end(), [&](uint64_t d) { return d != except; });
  return Status::OK();
}

bool Catalog::HasReferenceEdge(uint64_t reference, uint64_t dependent) {
  std::string v;
  return db_->Get(rocksdb::ReadOptions(), f_.deps, keys::Dep(reference, dependent), &v).ok();
}

bool Catalog::IsDetached(uint64_t object) {
  std::string v;
  return db_->Get(rocksdb::ReadOptions(), f_.detached, keys::U64(object), &v).ok();
}

Status Catalog::DetachedObjects(std::vector<uint64_t>* out) {
  out->clear();
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), f_.detached));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (it->key().size() == 8) out->push_back(GetBigEndian64(it->key().ToStringView()));
  }
  return FromRocks(it->status(), "scanning detached objects");
}

Status Catalog::PendingDemotions(std::vector<std::pair<uint64_t, uint64_t>>* out) {
  out->clear();
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), f_.pending));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (it->key().size() != 8 || it->value().size() != 8) continue;
    out->emplace_back(GetBigEndian64(it->key().ToStringView()), GetBigEndian64(it->value().ToStringView()));
  }
  return FromRocks(it->status(), "scanning pending demotions");
}

Status Catalog::ForEachObject(const std::function<bool(uint64_t object)>& fn) {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), f_.objects));
  Status malformed;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (it->key().size() != 8) {
      if (malformed.ok()) {
        malformed = Status::Corruption(
            fmt::format("objects: a key of {} bytes (0x{}) names no object", it->key().size(), it->key().ToString(true)));
      }
      continue;
    }
    if (!fn(GetBigEndian64(it->key().ToStringView()))) break;
  }
  TPDE_RETURN_IF_ERROR(FromRocks(it->status(), "scanning objects"));
  return malformed;
}

Status Catalog::Totals(const rocksdb::Snapshot* snap, CatalogTotals* out) {
  *out = CatalogTotals();
  rocksdb::ReadOptions ro;
  ro.snapshot = snap;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, f_.objects));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    Manifest m;
    TPDE_RETURN_IF_ERROR(ParseManifest(it->value().ToStringView(), &m));
    out->stored_bytes += m.payload_bytes() + it->value().size();
  }
  TPDE_RETURN_IF_ERROR(FromRocks(it->status(), "scanning objects"));
  std::unique_ptr<rocksdb::Iterator> d(db_->NewIterator(ro, f_.detached));
  for (d->SeekToFirst(); d->Valid(); d->Next()) {
    std::shared_ptr<const Manifest> m;
    if (GetManifest(GetBigEndian64(d->key().ToStringView()), &m, snap).ok()) {
      ++out->detached_objects;
      out->detached_bytes += m->payload_bytes();
    }
  }
  TPDE_RETURN_IF_ERROR(FromRocks(d->status(), "scanning detached objects"));
  return CountPendingDemotions(snap, &out->pending_demotions);
}

Status Catalog::CountPendingDemotions(const rocksdb::Snapshot* snap, uint64_t* count) {
  *count = 0;
  rocksdb::ReadOptions ro;
  ro.snapshot = snap;
  std::unique_ptr<rocksdb::Iterator> p(db_->NewIterator(ro, f_.pending));
  for (p->SeekToFirst(); p->Valid(); p->Next()) ++*count;
  return FromRocks(p->status(), "scanning pending demotions");
}

uint64_t Catalog::LastObject() {
  auto last_key = [&](rocksdb::ColumnFamilyHandle* cf) -> uint64_t {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf));
    it->SeekToLast();
    return it->Valid() && it->key().size() >= 8 ? GetBigEndian64(it->key().ToStringView()) : 0;
  };
  uint64_t last = last_key(f_.objects);
  for (auto* lane : f_.lanes) last = std::max(last, last_key(lane));
  return last;
}

// ---- Mutations --------------------------------------------------------------

void Catalog::PutManifest(rocksdb::WriteBatch* b, const Manifest& m, std::string* encoded) {
  std::string bytes;
  SerializeManifest(m, &bytes);
  b->Put(f_.objects, keys::U64(m.object_id), bytes);
  if (encoded != nullptr) *encoded = std::move(bytes);
}

void Catalog::MoveReferenceEdge(rocksdb::WriteBatch* b, uint64_t object, uint64_t old_reference,
                                uint64_t new_reference) {
  if (old_reference == new_reference) return;
  if (old_reference != 0) b->Delete(f_.deps, keys::Dep(old_reference, object));
  if (new_reference != 0) b->Put(f_.deps, keys::Dep(new_reference, object), "");
}

void Catalog::QueueDemotion(rocksdb::WriteBatch* b, uint64_t keyframe, uint64_t successor) {
  b->Put(f_.pending, keys::U64(keyframe), keys::U64(successor));
}

void Catalog::ClearDemotion(rocksdb::WriteBatch* b, uint64_t keyframe) { b->Delete(f_.pending, keys::U64(keyframe)); }

Status Catalog::ReleaseObject(rocksdb::WriteBatch* b, uint64_t object) {
  bool has = false;
  TPDE_RETURN_IF_ERROR(HasDependents(object, 0, &has));
  if (has) {
    b->Put(f_.detached, keys::U64(object), "");  // still a reference: kept until re-based
    return Status::OK();
  }
  return FreeObject(b, object);
}

Status Catalog::FreeObject(rocksdb::WriteBatch* b, uint64_t object) {
  std::shared_ptr<const Manifest> m;
  TPDE_RETURN_IF_ERROR(GetManifest(object, &m));
  b->Delete(f_.objects, keys::U64(object));
  DropGeneration(b, m->lane, object, m->generation);
  b->Delete(f_.detached, keys::U64(object));
  ClearDemotion(b, object);
  if (m->reference == 0) return Status::OK();
  b->Delete(f_.deps, keys::Dep(m->reference, object));
  if (!IsDetached(m->reference)) return Status::OK();
  bool has = false;
  TPDE_RETURN_IF_ERROR(HasDependents(m->reference, object, &has));
  return has ? Status::OK() : FreeObject(b, m->reference);
}

void Catalog::DropGeneration(rocksdb::WriteBatch* b, uint8_t lane, uint64_t object, uint32_t generation) {
  b->DeleteRange(f_.lanes[lane], keys::ChunkPrefix(object, generation), keys::ChunkPrefix(object, generation + 1));
}

void Catalog::Committed(const rocksdb::WriteBatch& b) {
  // What the batch did to manifests and chunk lanes, read back from its
  // records: the batch is the one account of it, whoever built it.
  struct Handler : rocksdb::WriteBatch::Handler {
    Catalog* catalog;
    std::vector<uint64_t> manifests;
    std::vector<FreedRange> ranges;
    void Manifest(uint32_t cf, const rocksdb::Slice& key) {
      if (cf == catalog->f_.objects->GetID() && key.size() == 8) manifests.push_back(GetBigEndian64(key.ToStringView()));
    }
    rocksdb::Status PutCF(uint32_t cf, const rocksdb::Slice& key, const rocksdb::Slice&) override {
      Manifest(cf, key);
      return rocksdb::Status::OK();
    }
    rocksdb::Status DeleteCF(uint32_t cf, const rocksdb::Slice& key) override {
      Manifest(cf, key);
      return rocksdb::Status::OK();
    }
    rocksdb::Status SingleDeleteCF(uint32_t cf, const rocksdb::Slice& key) override {
      Manifest(cf, key);
      return rocksdb::Status::OK();
    }
    rocksdb::Status MergeCF(uint32_t, const rocksdb::Slice&, const rocksdb::Slice&) override {
      return rocksdb::Status::OK();
    }
    rocksdb::Status DeleteRangeCF(uint32_t cf, const rocksdb::Slice& begin, const rocksdb::Slice& end) override {
      for (uint8_t lane = 0; lane < kChunkLanes; ++lane) {
        if (catalog->f_.lanes[lane]->GetID() == cf) ranges.push_back({lane, begin.ToString(), end.ToString()});
      }
      return rocksdb::Status::OK();
    }
  } h;
  h.catalog = this;
  if (!b.Iterate(&h).ok()) return;  // a batch RocksDB just took always parses
  for (uint64_t object : h.manifests) ForgetManifest(object);
  if (h.ranges.empty()) return;
  std::lock_guard<std::mutex> lock(freed_mu_);
  for (auto& r : h.ranges) freed_ranges_.push_back(std::move(r));
}

Status Catalog::DropOrphanGenerations(rocksdb::WriteBatch* b, int* dropped) {
  *dropped = 0;
  // Through a snapshot, so the manifests read here are not all cached.
  rocksdb::ManagedSnapshot snapshot(db_);
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot.snapshot();
  for (uint8_t lane = 0; lane < kChunkLanes; ++lane) {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, f_.lanes[lane]));
    for (it->SeekToFirst(); it->Valid();) {
      std::string_view k = it->key().ToStringView();
      if (k.size() != 16) {
        it->Next();
        continue;
      }
      const uint64_t object = GetBigEndian64(k);
      const uint32_t generation = static_cast<uint32_t>(GetBigEndian64(k.substr(8)) >> 32);
      std::shared_ptr<const Manifest> m;
      Status ms = GetManifest(object, &m, ro.snapshot);
      // A manifest that cannot be read (damage) keeps its payloads: Verify
      // names it, and a repair may still need them.
      if (ms.IsNotFound() || (ms.ok() && (m->generation != generation || m->lane != lane))) {
        DropGeneration(b, lane, object, generation);
        ++*dropped;
      }
      it->Seek(keys::ChunkPrefix(object, generation + 1));
    }
    // A lane that cannot be read to its end (a damaged or, after a repair,
    // unregistered blob file) keeps what was not scanned: opening the store
    // must still succeed, so that Verify can name the damage.
  }
  return Status::OK();
}

void Catalog::ForgetManifest(uint64_t object) {
  std::lock_guard<std::mutex> lock(cache_mu_);
  ++cache_epoch_;
  manifest_cache_.erase(object);
}

// ---- Reclaim ----------------------------------------------------------------

std::vector<Catalog::FreedRange> Catalog::TakeFreedRanges() {
  std::lock_guard<std::mutex> lock(freed_mu_);
  return std::exchange(freed_ranges_, {});
}

void Catalog::ReturnFreedRanges(std::vector<FreedRange> ranges) {
  std::lock_guard<std::mutex> lock(freed_mu_);
  for (auto& r : ranges) freed_ranges_.push_back(std::move(r));
}

// ---- Lanes ------------------------------------------------------------------

uint8_t Catalog::AcquireLane() {
  std::unique_lock<std::mutex> lock(lane_mu_);
  for (;;) {
    for (uint8_t lane = 1; lane < kChunkLanes; ++lane) {
      if (!(busy_lanes_ & (1u << lane))) {
        busy_lanes_ |= 1u << lane;
        return lane;
      }
    }
    lane_cv_.wait(lock);
  }
}

void Catalog::ReleaseLane(uint8_t lane) {
  {
    std::lock_guard<std::mutex> lock(lane_mu_);
    busy_lanes_ &= ~(1u << lane);
  }
  lane_cv_.notify_one();
}

}  // namespace tpde
