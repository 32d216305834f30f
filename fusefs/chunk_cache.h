// ChunkCache: decoded chunks of committed objects, least recently used out
// first, bounded in bytes. An object's content never changes and object ids
// are never reused, so a (object id, chunk index) entry never goes stale.
// Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

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

  explicit ChunkCache(uint64_t capacity_bytes) : capacity_(capacity_bytes) {}

  // Inserts (or refreshes) a chunk, evicting the least recently used.
  void Insert(uint64_t object, uint32_t chunk, Chunk data);
  // The cached chunk, or the result of `load` run once for every concurrent
  // caller of the same chunk (a reader and read-ahead never decode it
  // twice). A nullptr from `load` (an error) is returned to all and not cached.
  Chunk GetOrLoad(uint64_t object, uint32_t chunk, const std::function<Chunk()>& load);

  // True if the chunk is cached or being loaded.
  bool Contains(uint64_t object, uint32_t chunk) const;

  uint64_t size_bytes() const;
  uint64_t hits() const;
  uint64_t misses() const;

 private:
  struct Key {
    uint64_t object;
    uint32_t chunk;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const { return std::hash<uint64_t>()(k.object * 0x9E3779B97F4A7C15ull ^ k.chunk); }
  };
  struct Entry {
    Key key;
    Chunk data;
  };

  const uint64_t capacity_;
  mutable std::mutex mu_;
  std::list<Entry> lru_;  // front: most recent
  std::unordered_map<Key, std::list<Entry>::iterator, KeyHash> index_;
  std::unordered_map<Key, std::shared_future<Chunk>, KeyHash> loading_;
  uint64_t bytes_ = 0;
  uint64_t hits_ = 0, misses_ = 0;
};

}  // namespace tpde
