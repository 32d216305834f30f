// A fixed set of worker threads for data-parallel loops, shared by
// concurrent callers.
//
// ParallelFor(n, fn) runs fn(i) for every i in [0, n) on the workers and the
// calling thread, and returns when all n are done. Calls from different
// threads run at the same time: each call is a job in one queue, and a worker
// takes one index at a time from the jobs in turn (round robin), so a read
// started during a long ingest gets workers at once instead of waiting for
// the ingest's loop to end. The caller works on its own job only, so every
// call progresses even when all workers are busy elsewhere; fn may block
// (I/O, a lock) but must not call ParallelFor on the same pool (its caller
// would wait on items queued behind its own).
//
// Per-thread scratch belongs in `thread_local` storage inside fn: an index
// may run on any worker or the caller.
//
// Why not oneTBB: its workers are one set per process, shared by every
// arena, so a background pool could not run at a lower OS priority than the
// threads serving writes (setpriority per thread cannot be undone without
// privilege); arena priorities only order TBB's own work.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "codec/thread_annotations.h"

namespace tpde {

class ThreadPool {
 public:
  // threads == 0: std::thread::hardware_concurrency(); the pool starts
  // threads - 1 workers (the caller is the last one). `nice` > 0 lowers the
  // workers' CPU priority (setpriority(2) per thread; best effort): a
  // background pool (re-encoding, reclaim) then yields the cores to saves
  // and reads.
  explicit ThreadPool(size_t threads = 0, int nice = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Threads that can run one call's items at once: workers + the caller.
  size_t size() const { return workers_.size() + 1; }

  void ParallelFor(size_t n, const std::function<void(size_t i)>& fn) TPDE_EXCLUDES(mu_);

 private:
  struct Job {
    const std::function<void(size_t)>* fn = nullptr;
    size_t n = 0;
    size_t next = 0;  // first index not taken
    size_t done = 0;  // indices finished
    std::condition_variable finished;
  };

  void WorkerLoop();
  // Takes the next index of `job` and runs it; false if none was left.
  bool RunOne(Job* job, std::unique_lock<std::mutex>* lock) TPDE_REQUIRES(mu_);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable work_cv_;
  std::deque<Job*> queue_ TPDE_GUARDED_BY(mu_);  // jobs with indices not yet taken
  bool stop_ TPDE_GUARDED_BY(mu_) = false;
};

}  // namespace tpde
