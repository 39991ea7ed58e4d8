#include "thread_pool.h"

namespace sa {

ThreadPool::ThreadPool(int threads) : threads_(threads < 1 ? 1 : threads) {
  workers_.reserve((size_t)threads_ - 1);
  for (int i = 1; i < threads_; ++i) workers_.emplace_back([this, i] { worker_main(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_start_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::work(int id) {
  for (;;) {
    int64_t t = next_.fetch_add(1, std::memory_order_relaxed);
    if (t >= n_) break;
    fn_(ctx_, t, id);
  }
}

void ThreadPool::worker_main(int id) {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_start_.wait(lk, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
    }
    work(id);
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (--active_ == 0) cv_done_.notify_all();
    }
  }
}

void ThreadPool::run(int64_t n, void (*fn)(void*, int64_t, int), void* ctx) {
  if (n <= 0) return;
  std::lock_guard<std::mutex> region(region_mu_);
  if (threads_ == 1 || n == 1) {
    for (int64_t t = 0; t < n; ++t) fn(ctx, t, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    n_ = n;
    fn_ = fn;
    ctx_ = ctx;
    next_.store(0, std::memory_order_relaxed);
    active_ = threads_ - 1;
    ++generation_;
  }
  cv_start_.notify_all();
  work(0);
  std::unique_lock<std::mutex> lk(mu_);
  cv_done_.wait(lk, [&] { return active_ == 0; });
}

namespace {
struct Limited {
  void (*fn)(void*, int64_t, int);
  void* ctx;
  int64_t n;
  int64_t per;
};
void limited_task(void* c, int64_t t, int worker) {
  Limited& l = *(Limited*)c;
  // "virtual worker" t runs tasks t, t + limit, ... and owns scratch slot `worker` meanwhile
  for (int64_t x = t; x < l.n; x += l.per) l.fn(l.ctx, x, worker);
}
}  // namespace

void LimitedParallel::run(int64_t n, void (*fn)(void*, int64_t, int), void* ctx) {
  if (limit_ >= base_.workers()) return base_.run(n, fn, ctx);
  Limited l{fn, ctx, n, limit_};
  base_.run(limit_ < n ? limit_ : n, limited_task, &l);
}

}  // namespace sa
