#include "fusefs/chunk_cache.h"

namespace tpde {

void ChunkCache::Insert(uint64_t object, uint32_t chunk, Chunk data) {
  const uint64_t size = data->size();
  if (size > capacity_) return;
  std::lock_guard<std::mutex> lock(mu_);
  const Key key{object, chunk};
  if (auto it = index_.find(key); it != index_.end()) {
    bytes_ -= it->second->data->size();
    lru_.erase(it->second);
    index_.erase(it);
  }
  lru_.push_front({key, std::move(data)});
  index_[key] = lru_.begin();
  bytes_ += size;
  while (bytes_ > capacity_ && !lru_.empty()) {
    bytes_ -= lru_.back().data->size();
    index_.erase(lru_.back().key);
    lru_.pop_back();
  }
}

bool ChunkCache::Contains(uint64_t object, uint32_t chunk) const {
  const Key key{object, chunk};
  std::lock_guard<std::mutex> lock(mu_);
  return index_.count(key) != 0 || loading_.count(key) != 0;
}

ChunkCache::Chunk ChunkCache::GetOrLoad(uint64_t object, uint32_t chunk, const std::function<Chunk()>& load) {
  const Key key{object, chunk};
  std::promise<Chunk> promise;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (auto it = index_.find(key); it != index_.end()) {
      ++hits_;
      lru_.splice(lru_.begin(), lru_, it->second);
      return it->second->data;
    }
    if (auto it = loading_.find(key); it != loading_.end()) {
      ++hits_;
      std::shared_future<Chunk> pending = it->second;
      lock.unlock();
      return pending.get();
    }
    ++misses_;
    loading_.emplace(key, promise.get_future().share());
  }
  Chunk data = load();
  promise.set_value(data);
  if (data) Insert(object, chunk, data);
  std::lock_guard<std::mutex> lock(mu_);
  loading_.erase(key);
  return data;
}

uint64_t ChunkCache::size_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}
uint64_t ChunkCache::hits() const {
  std::lock_guard<std::mutex> lock(mu_);
  return hits_;
}
uint64_t ChunkCache::misses() const {
  std::lock_guard<std::mutex> lock(mu_);
  return misses_;
}

}  // namespace tpde
