#include "rad/runtime/thread_pool.h"

#include <sched.h>

#include <algorithm>

namespace rad::runtime {

namespace {
int available_cpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Iterations a worker spins on the job counter before it sleeps (~tens of microseconds): long
// enough to bridge the gap between the kernels of one decode step, short enough not to take a
// shared core from other processes for long.
constexpr int kSpinIterations = 20000;
}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads > 0 ? n_threads : available_cpus()) {
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::work(int thread_index) {
  for (int64_t b; (b = next_.fetch_add(1)) < n_blocks_;) {
    call_(ctx_, b, thread_index);
    done_.fetch_add(1);
  }
}

void ThreadPool::dispatch(int64_t n_blocks, void* ctx, Call call) {
  ctx_ = ctx;
  call_ = call;
  n_blocks_ = n_blocks;
  next_.store(0);
  done_.store(0);
  open_.store(true);
  {
    std::lock_guard<std::mutex> lock(mutex_);  // no lost wake-up for a worker about to sleep
    generation_.fetch_add(1);
  }
  cv_.notify_all();
  work(0);
  for (int spins = 0; done_.load() < n_blocks;)  // blocks other threads are still running
    if (++spins < kSpinIterations) cpu_relax();
    else std::this_thread::yield();
  open_.store(false);
  for (int spins = 0; active_.load() != 0;)  // workers still inside (finding no block left)
    if (++spins < kSpinIterations) cpu_relax();
    else std::this_thread::yield();
}

void ThreadPool::worker(int index) {
  uint64_t seen = 0;
  for (;;) {
    int spins = 0;
    uint64_t g;
    while ((g = generation_.load(std::memory_order_acquire)) == seen && spins < kSpinIterations) {
      cpu_relax();
      ++spins;
    }
    if (g == seen) {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return generation_.load() != seen; });
      g = generation_.load();
    }
    seen = g;
    if (stop_.load()) return;
    active_.fetch_add(1);  // seq_cst: ordered before the read of open_ (see the header)
    if (open_.load()) work(index);
    active_.fetch_sub(1);
  }
}

}  // namespace rad::runtime
