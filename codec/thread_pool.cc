#include "codec/thread_pool.h"

#include <sys/resource.h>
#include <unistd.h>

namespace tpde {

ThreadPool::ThreadPool(size_t threads, int nice) {
  if (threads == 0) threads = std::max<size_t>(1, std::thread::hardware_concurrency());
  for (size_t w = 1; w < threads; ++w) {
    workers_.emplace_back([this, w, nice] {
      // Best effort: without the privilege to change it the pool just runs
      // at the default priority.
      if (nice > 0) (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), nice);
      WorkerLoop(w);
    });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  start_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::RunItems(size_t worker) {
  std::unique_lock<std::mutex> lock(mu_);
  while (next_ < n_) {
    size_t i = next_++;
    lock.unlock();
    (*fn_)(i, worker);
    lock.lock();
  }
}

void ThreadPool::WorkerLoop(size_t worker) {
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    start_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    ++active_;
    lock.unlock();
    RunItems(worker);
    lock.lock();
    if (--active_ == 0) done_cv_.notify_all();
  }
}

void ThreadPool::ParallelFor(size_t n, const std::function<void(size_t, size_t)>& fn) {
  if (n == 0) return;
  std::lock_guard<std::mutex> run_lock(run_mu_);
  if (workers_.empty() || n == 1) {
    for (size_t i = 0; i < n; ++i) fn(i, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    fn_ = &fn;
    n_ = n;
    next_ = 0;
    ++generation_;
  }
  start_cv_.notify_all();
  RunItems(0);
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [&] { return active_ == 0 && next_ >= n_; });
  fn_ = nullptr;
}

}  // namespace tpde
