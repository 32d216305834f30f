// ChunkCache: decoded chunks of committed objects, least recently used out
// first, bounded in bytes (RocksDB's LRU cache, rocksdb/cache.h, with our
// single-flight loading on top). An object's content never changes and object ids
// are never reused, so a (object id, chunk index) entry never goes stale.
// Thread-safe.
#pragma once

#include <rocksdb/cache.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "codec/thread_annotations.h"

namespace tpde {

// The decoded bytes of one chunk. Not zero-filled on allocation: a decoder
// writes every byte before it is shared.
class ChunkBuffer {
 public:
  explicit ChunkBuffer(size_t size) : bytes_(new uint8_t[size]), size_(size) {}
  uint8_t* data() { return bytes_.get(); }
  const uint8_t* data() const { return bytes_.get(); }
  size_t size() const { return size_; }

 private:
  std::unique_ptr<uint8_t[]> bytes_;
  size_t size_;
};

class ChunkCache {
 public:
  using Chunk = std::shared_ptr<const ChunkBuffer>;

  // `capacity_bytes`: decoded bytes kept (RocksDB's LRU cache, sharded so
  // that each shard holds at least 16 chunks of 1 MiB; LRU order is per
  // shard).
  explicit ChunkCache(uint64_t capacity_bytes);

  // Inserts (or replaces) a chunk; the least recently used go first.
  void Insert(uint64_t object, uint32_t chunk, Chunk data);
  // The cached chunk, or the result of `load` run once for every concurrent
  // caller of the same chunk (a reader and read-ahead never decode it
  // twice). A nullptr from `load` (an error) is returned to all and not cached.
  Chunk GetOrLoad(uint64_t object, uint32_t chunk, const std::function<Chunk()>& load);

  // True if the chunk is cached or being loaded.
  bool Contains(uint64_t object, uint32_t chunk) const;

  uint64_t size_bytes() const;
  uint64_t hits() const { return hits_.load(std::memory_order_relaxed); }
  uint64_t misses() const { return misses_.load(std::memory_order_relaxed); }

 private:
  struct Key {
    uint64_t object;
    uint32_t chunk;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const { return std::hash<uint64_t>()(k.object * 0x9E3779B97F4A7C15ull ^ k.chunk); }
  };

  Chunk Lookup(const Key& key) const;

  // Values are heap-allocated Chunks (shared pointers): a chunk evicted while
  // a reader holds it stays alive until the reader drops it.
  std::shared_ptr<rocksdb::Cache> cache_;
  mutable std::mutex mu_;  // loading_ only
  std::unordered_map<Key, std::shared_future<Chunk>, KeyHash> loading_ TPDE_GUARDED_BY(mu_);
  std::atomic<uint64_t> hits_{0}, misses_{0};
};

}  // namespace tpde
