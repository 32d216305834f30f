#include "fusefs/chunk_cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

namespace tpde {
namespace {

constexpr size_t kChunk = size_t{1} << 20;

ChunkCache::Chunk MakeChunk(uint8_t fill, size_t size = kChunk) {
  auto b = std::make_shared<ChunkBuffer>(size);
  std::memset(b->data(), fill, size);
  return b;
}

TEST(ChunkCacheTest, ReturnsWhatWasInserted) {
  ChunkCache cache(64u << 20);
  cache.Insert(7, 3, MakeChunk(0xab));
  bool loaded = false;
  ChunkCache::Chunk c = cache.GetOrLoad(7, 3, [&] {
    loaded = true;
    return MakeChunk(0);
  });
  ASSERT_NE(c, nullptr);
  EXPECT_FALSE(loaded);
  EXPECT_EQ(c->data()[kChunk - 1], 0xab);
  EXPECT_TRUE(cache.Contains(7, 3));
  EXPECT_FALSE(cache.Contains(7, 4));
  EXPECT_FALSE(cache.Contains(8, 3));
  EXPECT_EQ(cache.hits(), 1u);
  EXPECT_EQ(cache.misses(), 0u);
}

TEST(ChunkCacheTest, StaysWithinItsCapacity) {
  const uint64_t capacity = 64u << 20;
  ChunkCache cache(capacity);
  for (uint32_t i = 0; i < 256; ++i) {
    cache.Insert(1, i, MakeChunk(static_cast<uint8_t>(i)));
    EXPECT_LE(cache.size_bytes(), capacity);
  }
  EXPECT_GE(cache.size_bytes(), capacity / 2);  // it does keep chunks
  // The newest chunk is there, and holds its own bytes.
  ChunkCache::Chunk c = cache.GetOrLoad(1, 255, [] { return nullptr; });
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->data()[0], 255);
}

TEST(ChunkCacheTest, AChunkHeldByAReaderOutlivesEviction) {
  ChunkCache cache(16u << 20);
  ChunkCache::Chunk held = cache.GetOrLoad(1, 0, [] { return MakeChunk(0x11); });
  for (uint32_t i = 1; i < 64; ++i) cache.Insert(1, i, MakeChunk(0x22));
  EXPECT_EQ(held->data()[kChunk / 2], 0x11);
}

TEST(ChunkCacheTest, ConcurrentCallersLoadOnce) {
  ChunkCache cache(64u << 20);
  std::atomic<int> loads{0};
  std::vector<std::thread> readers;
  std::vector<ChunkCache::Chunk> got(8);
  for (int t = 0; t < 8; ++t) {
    readers.emplace_back([&, t] {
      got[t] = cache.GetOrLoad(5, 9, [&] {
        loads.fetch_add(1);
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        return MakeChunk(0x5a);
      });
    });
  }
  for (auto& r : readers) r.join();
  EXPECT_EQ(loads.load(), 1);
  for (const auto& c : got) {
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->data()[123], 0x5a);
  }
  EXPECT_EQ(cache.misses(), 1u);
  EXPECT_EQ(cache.hits(), 7u);
}

TEST(ChunkCacheTest, AFailedLoadIsNotCached) {
  ChunkCache cache(64u << 20);
  EXPECT_EQ(cache.GetOrLoad(2, 1, [] { return nullptr; }), nullptr);
  EXPECT_FALSE(cache.Contains(2, 1));
  ChunkCache::Chunk c = cache.GetOrLoad(2, 1, [] { return MakeChunk(0x33); });
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->data()[0], 0x33);
}

}  // namespace
}  // namespace tpde
