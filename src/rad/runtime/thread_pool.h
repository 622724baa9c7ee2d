// A small fork-join pool for the runtime's kernels. Work is cut into blocks that threads take
// from a shared counter, and the caller (thread 0) works too: on a machine shared with other
// processes, a worker that the OS has descheduled does not hold up a job - the others take its
// blocks, and a worker that arrives after the job is done skips it. Workers spin briefly for the
// next job before sleeping, so the ~30 joins of a decode step cost microseconds, yet an idle pool
// uses no CPU. Jobs are passed by reference (no std::function, no allocation per call).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace rad::runtime {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);  // n_threads <= 0: the cores this process may use
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls f(block, thread_index) for every block in [0, n_blocks), each exactly once, and returns
  // when all are done. thread_index < size() (for per-thread scratch).
  template <typename F>
  void for_blocks(int64_t n_blocks, F& f) {
    if (n_threads_ == 1 || n_blocks <= 1) {
      for (int64_t b = 0; b < n_blocks; ++b) f(b, 0);
      return;
    }
    dispatch(n_blocks, &f, [](void* ctx, int64_t b, int t) { (*static_cast<F*>(ctx))(b, t); });
  }

 private:
  using Call = void (*)(void*, int64_t, int);
  void dispatch(int64_t n_blocks, void* ctx, Call call);
  void work(int thread_index);
  void worker(int index);

  int n_threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
  // The current job. Published by `open_` (set last); a worker announces itself in `active_`
  // before it checks `open_`, and the caller closes the job and waits for active_ == 0 before it
  // returns, so no worker touches a finished job's (stack) context.
  std::atomic<bool> open_{false};
  std::atomic<int> active_{0};
  std::atomic<int64_t> next_{0}, done_{0};
  int64_t n_blocks_ = 0;
  void* ctx_ = nullptr;
  Call call_ = nullptr;
};

}  // namespace rad::runtime
