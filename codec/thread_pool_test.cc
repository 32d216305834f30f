#include "codec/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <set>
#include <thread>
#include <vector>

namespace tpde {
namespace {

TEST(ThreadPoolTest, RunsEveryIndexOnce) {
  ThreadPool pool(4);
  for (size_t n : {0, 1, 2, 3, 4, 5, 17, 1000}) {
    std::vector<std::atomic<int>> seen(n);
    pool.ParallelFor(n, [&](size_t i) { seen[i].fetch_add(1); });
    for (size_t i = 0; i < n; ++i) EXPECT_EQ(seen[i].load(), 1) << "n " << n << " index " << i;
  }
}

TEST(ThreadPoolTest, UsesTheWorkers) {
  ThreadPool pool(4);
  std::mutex mu;
  std::set<std::thread::id> threads;
  std::atomic<int> arrived{0};
  // Each index waits until all four have started: only four threads at once
  // finish this.
  pool.ParallelFor(4, [&](size_t) {
    arrived.fetch_add(1);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (arrived.load() < 4 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    std::lock_guard<std::mutex> lock(mu);
    threads.insert(std::this_thread::get_id());
  });
  EXPECT_EQ(arrived.load(), 4);
  EXPECT_EQ(threads.size(), 4u);
}

// A call made while another is running is not queued behind it: its items
// run while the first call's items are still blocked. (A pool that serialised
// its callers would time out here.)
TEST(ThreadPoolTest, ConcurrentCallsRunTogether) {
  ThreadPool pool(4);
  std::promise<void> second_done;
  std::shared_future<void> released = second_done.get_future().share();
  std::atomic<bool> first_saw_second{false};
  std::thread first([&] {
    pool.ParallelFor(8, [&](size_t) {
      if (released.wait_for(std::chrono::seconds(10)) == std::future_status::ready) first_saw_second = true;
    });
  });
  // Let the first call take the workers, then run a second one.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::atomic<int> ran{0};
  pool.ParallelFor(16, [&](size_t) { ran.fetch_add(1); });
  EXPECT_EQ(ran.load(), 16);
  second_done.set_value();
  first.join();
  EXPECT_TRUE(first_saw_second.load());
}

TEST(ThreadPoolTest, ManyCallersAtOnce) {
  ThreadPool pool(3);
  std::atomic<uint64_t> sum{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 8; ++t) {
    callers.emplace_back([&] {
      for (int round = 0; round < 50; ++round) pool.ParallelFor(37, [&](size_t i) { sum.fetch_add(i); });
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(sum.load(), 8u * 50u * (36u * 37u / 2u));
}

TEST(ThreadPoolTest, SingleThreadPoolRunsOnTheCaller) {
  ThreadPool pool(1);
  EXPECT_EQ(pool.size(), 1u);
  const auto caller = std::this_thread::get_id();
  bool elsewhere = false;
  pool.ParallelFor(10, [&](size_t) { elsewhere |= std::this_thread::get_id() != caller; });
  EXPECT_FALSE(elsewhere);
}

}  // namespace
}  // namespace tpde
