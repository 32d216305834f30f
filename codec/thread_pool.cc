#include "codec/thread_pool.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>

namespace tpde {

ThreadPool::ThreadPool(size_t threads, int nice) {
  if (threads == 0) threads = std::max<size_t>(1, std::thread::hardware_concurrency());
  for (size_t w = 1; w < threads; ++w) {
    workers_.emplace_back([this, nice] {
      // Best effort: without the privilege to change it the pool just runs
      // at the default priority.
      if (nice > 0) (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), nice);
      WorkerLoop();
    });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

bool ThreadPool::RunOne(Job* job, std::unique_lock<std::mutex>* lock) {
  if (job->next >= job->n) return false;
  const size_t i = job->next++;
  if (job->next == job->n) {
    // Its last index is taken: the job leaves the queue.
    queue_.erase(std::find(queue_.begin(), queue_.end(), job));
  }
  lock->unlock();
  (*job->fn)(i);
  lock->lock();
  if (++job->done == job->n) job->finished.notify_one();
  return true;
}

void ThreadPool::WorkerLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    work_cv_.wait(lock, [&]() TPDE_REQUIRES(mu_) { return stop_ || !queue_.empty(); });
    if (stop_) return;
    // Round robin: the job served goes to the back, so concurrent calls
    // share the workers.
    Job* job = queue_.front();
    if (queue_.size() > 1 && job->next + 1 < job->n) {
      queue_.pop_front();
      queue_.push_back(job);
    }
    RunOne(job, &lock);
  }
}

void ThreadPool::ParallelFor(size_t n, const std::function<void(size_t)>& fn) {
  if (n == 0) return;
  if (workers_.empty() || n == 1) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  Job job;
  job.fn = &fn;
  job.n = n;
  std::unique_lock<std::mutex> lock(mu_);
  queue_.push_back(&job);
  if (n - 1 >= workers_.size()) {
    work_cv_.notify_all();
  } else {
    for (size_t k = 0; k + 1 < n; ++k) work_cv_.notify_one();
  }
  while (RunOne(&job, &lock)) {
  }
  job.finished.wait(lock, [&] { return job.done == job.n; });
}

}  // namespace tpde
