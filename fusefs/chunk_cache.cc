#include "fusefs/chunk_cache.h"

#include <algorithm>
#include <cstring>

namespace tpde {
namespace {

constexpr uint64_t kShardBytes = uint64_t{16} << 20;  // 16 chunks of 1 MiB

// 12 bytes: object id and chunk index (host order; the key never leaves
// the process).
struct KeyBytes {
  char bytes[12];
  rocksdb::Slice slice() const { return rocksdb::Slice(bytes, sizeof(bytes)); }
};

KeyBytes Encode(uint64_t object, uint32_t chunk) {
  KeyBytes k;
  std::memcpy(k.bytes, &object, 8);
  std::memcpy(k.bytes + 8, &chunk, 4);
  return k;
}

void DeleteChunk(const rocksdb::Slice&, void* value) { delete static_cast<ChunkCache::Chunk*>(value); }

int ShardBits(uint64_t capacity) {
  int bits = 0;
  while (bits < 6 && (capacity >> (bits + 1)) >= kShardBytes) ++bits;
  return bits;
}

}  // namespace

ChunkCache::ChunkCache(uint64_t capacity_bytes) {
  rocksdb::LRUCacheOptions o;
  o.capacity = capacity_bytes;
  o.num_shard_bits = ShardBits(capacity_bytes);
  o.metadata_charge_policy = rocksdb::kDontChargeCacheMetadata;  // capacity counts decoded bytes
  cache_ = rocksdb::NewLRUCache(o);
}

void ChunkCache::Insert(uint64_t object, uint32_t chunk, Chunk data) {
  const size_t charge = data->size();
  // Without a handle, an entry larger than its shard is dropped at once
  // (and freed by the cache): nothing to do on failure.
  (void)cache_->Insert(Encode(object, chunk).slice(), new Chunk(std::move(data)), charge, &DeleteChunk);
}

ChunkCache::Chunk ChunkCache::Lookup(const Key& key) const {
  rocksdb::Cache::Handle* h = cache_->Lookup(Encode(key.object, key.chunk).slice());
  if (h == nullptr) return nullptr;
  Chunk data = *static_cast<Chunk*>(cache_->Value(h));
  cache_->Release(h);
  return data;
}

bool ChunkCache::Contains(uint64_t object, uint32_t chunk) const {
  const Key key{object, chunk};
  if (Lookup(key) != nullptr) return true;
  std::lock_guard<std::mutex> lock(mu_);
  return loading_.count(key) != 0;
}

ChunkCache::Chunk ChunkCache::GetOrLoad(uint64_t object, uint32_t chunk, const std::function<Chunk()>& load) {
  const Key key{object, chunk};
  if (Chunk data = Lookup(key)) {
    hits_.fetch_add(1, std::memory_order_relaxed);
    return data;
  }
  std::promise<Chunk> promise;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (auto it = loading_.find(key); it != loading_.end()) {
      hits_.fetch_add(1, std::memory_order_relaxed);
      std::shared_future<Chunk> pending = it->second;
      lock.unlock();
      return pending.get();
    }
    // Inserted between the lookup and the lock: a hit after all.
    if (Chunk data = Lookup(key)) {
      hits_.fetch_add(1, std::memory_order_relaxed);
      return data;
    }
    misses_.fetch_add(1, std::memory_order_relaxed);
    loading_.emplace(key, promise.get_future().share());
  }
  Chunk data = load();
  if (data) Insert(object, chunk, data);
  promise.set_value(data);
  std::lock_guard<std::mutex> lock(mu_);
  loading_.erase(key);
  return data;
}

uint64_t ChunkCache::size_bytes() const { return cache_->GetUsage(); }

}  // namespace tpde
