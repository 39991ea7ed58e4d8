// A persistent thread pool: `threads - 1` workers plus the calling thread run the tasks of one
// parallel region at a time (regions from different callers are serialised). Between regions a
// worker spins for a short while (kSpinMicros) before it sleeps on the condition variable, and the
// caller spins the same way for the workers to finish: back-to-back regions (the multi-head block
// runs three per forward) then start and end without a futex wake-up each (tens of microseconds
// on a VM). A pool with more threads than the machine has cores never spins, and no thread spins
// while more threads are awake (working or spinning, in all the pools of the process) than there
// are cores: its spinning would take a core from a working thread. Tasks are handed out dynamically, but the kernels make
// every output depend only on its task, never on which thread ran it or how many there are, so
// results are bit-identical for any thread count.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "include/attention_kernels.h"

namespace sa {

class ThreadPool final : public Parallel {
 public:
  // cores: how many this process can keep busy (0: its CPU affinity's count)
  explicit ThreadPool(int threads, int cores = 0);
  ~ThreadPool() override;
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int workers() const override { return threads_; }
  // waits while another caller's region runs
  void run(int64_t n, void (*fn)(void*, int64_t, int), void* ctx) override;
  // runs the tasks on the calling thread alone when another caller's region holds the pool
  void run_or_inline(int64_t n, void (*fn)(void*, int64_t, int), void* ctx);
  int threads() const { return threads_; }

 private:
  void run_region(int64_t n, void (*fn)(void*, int64_t, int), void* ctx);
  void worker_main(int id);
  void work(int id);
  void stop_workers();

  int threads_;
  int cores_;
  int64_t spin_micros_;  // kSpinMicros, or 0 when the pool has more threads than the machine cores
  std::vector<std::thread> workers_;
  std::atomic<bool> busy_{false};  // a region holds the workers
  std::mutex region_mu_;           // the callers waiting for them
  std::mutex mu_;
  std::condition_variable cv_start_, cv_done_;
  uint64_t generation_ = 0;
  std::atomic<uint64_t> gen_{0};  // generation_ mirrored for the lock-free spin
  std::atomic<bool> stop_{false};
  std::atomic<int> active_{0};
  // current region
  int64_t n_ = 0;
  void (*fn_)(void*, int64_t, int) = nullptr;
  void* ctx_ = nullptr;
  std::atomic<int64_t> next_{0};
};

// The pool as a thread that must not wait sees it (an event loop's, whose synchronous calls
// would otherwise stall it until another caller's long region ends): a region that finds the pool
// busy runs on the calling thread alone. Results are the same: they never depend on the thread
// count.
class InlineWhenBusy final : public Parallel {
 public:
  explicit InlineWhenBusy(ThreadPool& pool) : pool_(pool) {}
  int workers() const override { return pool_.workers(); }
  void run(int64_t n, void (*fn)(void*, int64_t, int), void* ctx) override { pool_.run_or_inline(n, fn, ctx); }

 private:
  ThreadPool& pool_;
};

// Limits a region to the first `limit` workers of a pool (per-call `threads` option).
class LimitedParallel final : public Parallel {
 public:
  LimitedParallel(Parallel& base, int limit) : base_(base), limit_(limit < 1 ? 1 : limit) {}
  int workers() const override { return base_.workers(); }
  void run(int64_t n, void (*fn)(void*, int64_t, int), void* ctx) override;

 private:
  Parallel& base_;
  int limit_;
};

}  // namespace sa
