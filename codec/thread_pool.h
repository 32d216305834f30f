// A fixed pool of worker threads for data-parallel loops.
//
// ParallelFor(n, fn) runs fn(i, worker) for every i in [0, n) on the pool and
// the calling thread, and returns when all are done; `worker` is a dense
// index in [0, size()) that callers use to pick per-thread scratch buffers
// (no two concurrent calls of fn share a worker index). One ParallelFor runs
// at a time per pool: concurrent callers are serialised.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tpde {

class ThreadPool {
 public:
  // threads == 0: std::thread::hardware_concurrency(). `nice` > 0 lowers the
  // workers' CPU priority (setpriority(2) per thread): a background pool
  // (re-encoding, reclaim) then yields the cores to saves and reads.
  explicit ThreadPool(size_t threads = 0, int nice = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Number of distinct worker indices (workers + the calling thread).
  size_t size() const { return workers_.size() + 1; }

  void ParallelFor(size_t n, const std::function<void(size_t i, size_t worker)>& fn);

 private:
  void WorkerLoop(size_t worker);
  void RunItems(size_t worker);

  std::vector<std::thread> workers_;
  std::mutex run_mu_;  // serialises ParallelFor calls
  std::mutex mu_;
  std::condition_variable start_cv_;
  std::condition_variable done_cv_;
  const std::function<void(size_t, size_t)>* fn_ = nullptr;
  size_t n_ = 0;
  size_t next_ = 0;
  size_t active_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

}  // namespace tpde
