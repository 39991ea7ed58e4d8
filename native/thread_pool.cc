#include "thread_pool.h"

#include <chrono>

namespace sa {

namespace {
constexpr int64_t kSpinMicros = 100;  // how long an idle worker (or the waiting caller) spins

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

// spins until pred() holds or `micros` pass; returns pred()
template <class F>
inline bool spin_until(F pred, int64_t micros) {
  if (pred()) return true;
  if (micros <= 0) return false;
  const auto t0 = std::chrono::steady_clock::now();
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      cpu_relax();
      if (pred()) return true;
    }
    if (std::chrono::steady_clock::now() - t0 > std::chrono::microseconds(micros)) return pred();
  }
}

// cv.wait(lk, pred) as timed waits on the system clock. GCC 12's libstdc++ versions
// condition_variable::wait as GLIBCXX_3.4.30, which kept the prebuilt addon from loading where
// the C++ runtime is older (RHEL 9, Amazon Linux 2023: GCC 11); a wait_until on the system
// clock is inline code over pthread_cond_timedwait, which every glibc has (the steady clock's
// pthread_cond_clockwait would need glibc 2.34). The deadline only bounds each sleep (a clock
// step just wakes it early or late); the predicate decides.
template <class F>
inline void sleep_until(std::condition_variable& cv, std::unique_lock<std::mutex>& lk, F pred) {
  while (!pred()) cv.wait_until(lk, std::chrono::system_clock::now() + std::chrono::seconds(10));
}
}  // namespace

// More threads than the machine has cores: a spinning worker would hold a core that another
// thread of the region needs (threads 16 on 2 cores ran small calls ~3x slower), so the pool's
// threads sleep as soon as they are idle.
static int64_t spin_budget(int threads) {
  const unsigned cores = std::thread::hardware_concurrency();
  return cores != 0 && (unsigned)threads > cores ? 0 : kSpinMicros;
}

ThreadPool::ThreadPool(int threads) : threads_(threads < 1 ? 1 : threads), spin_micros_(spin_budget(threads_)) {
  workers_.reserve((size_t)threads_ - 1);
  for (int i = 1; i < threads_; ++i) workers_.emplace_back([this, i] { worker_main(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_.store(true, std::memory_order_release);
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
    auto ready = [&] { return stop_.load(std::memory_order_acquire) || gen_.load(std::memory_order_acquire) != seen; };
    if (!spin_until(ready, spin_micros_)) {
      std::unique_lock<std::mutex> lk(mu_);
      sleep_until(cv_start_, lk, ready);
    }
    if (stop_.load(std::memory_order_acquire)) return;
    // the region's fields were written before gen_ was released
    seen = gen_.load(std::memory_order_acquire);
    work(id);
    if (active_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lk(mu_);  // the caller checks active_ under mu_ before it sleeps
      cv_done_.notify_all();
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
    active_.store(threads_ - 1, std::memory_order_relaxed);
    ++generation_;
    gen_.store(generation_, std::memory_order_release);
  }
  cv_start_.notify_all();
  work(0);
  auto done = [&] { return active_.load(std::memory_order_acquire) == 0; };
  if (!spin_until(done, spin_micros_)) {
    std::unique_lock<std::mutex> lk(mu_);
    sleep_until(cv_done_, lk, done);
  }
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
