#include "thread_pool.h"

#include <chrono>
#if defined(__linux__)
#include <sched.h>
#endif

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

// Threads of every pool in the process that are awake: running a region (its caller included)
// or spinning for one. A spinner holds a core; once more threads are awake than the machine has
// cores, it would hold one that a working thread needs: a pool with more threads than cores, or
// several pools at once (one engine per worker thread: 4 workers x 2 threads on 2 cores ran
// ~8% slower than 4 x 1 while they spun, ~2% with this rule). So spinning stops there and the
// thread sleeps.
std::atomic<int> g_awake{0};

// The cores this process may run on when the caller does not say (ThreadPool's `cores` 0): its
// CPU affinity where the OS tells it (taskset, a container's cpuset), as os.availableParallelism()
// counts them; hardware_concurrency() counts every online CPU of the machine. 0: unknown. (The
// binding passes the count src/backends/usable-cores.ts makes, which also heeds a cgroup quota.)
int affinity_cores() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  return (int)std::thread::hardware_concurrency();
}
const int g_affinity_cores = affinity_cores();

inline bool oversubscribed(int cores) { return cores > 0 && g_awake.load(std::memory_order_relaxed) > cores; }

// counts the calling thread as awake for its lifetime
struct Awake {
  Awake() { g_awake.fetch_add(1, std::memory_order_relaxed); }
  ~Awake() { g_awake.fetch_sub(1, std::memory_order_relaxed); }
  Awake(const Awake&) = delete;
  Awake& operator=(const Awake&) = delete;
};

// spins until pred() holds, `micros` pass or more threads are awake than `cores`; returns pred()
template <class F>
inline bool spin_until(F pred, int64_t micros, int cores) {
  if (pred()) return true;
  if (micros <= 0) return false;
  const auto t0 = std::chrono::steady_clock::now();
  for (;;) {
    if (oversubscribed(cores)) return pred();
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
// The sleeping thread is not counted as awake meanwhile.
template <class F>
inline void sleep_until(std::condition_variable& cv, std::unique_lock<std::mutex>& lk, F pred) {
  if (pred()) return;
  g_awake.fetch_sub(1, std::memory_order_relaxed);
  while (!pred()) cv.wait_until(lk, std::chrono::system_clock::now() + std::chrono::seconds(10));
  g_awake.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

// A pool with more threads than the machine has cores never spins: at a region's start its
// sleeping workers are woken but not yet counted as awake, and the first ones to finish would
// spin on the cores the rest are waiting for (threads 16 on 2 cores ran small calls ~3-5x slower).
static int64_t spin_budget(int threads, int cores) {
  return cores > 0 && threads > cores ? 0 : kSpinMicros;
}

ThreadPool::ThreadPool(int threads, int cores)
    : threads_(threads < 1 ? 1 : threads), cores_(cores > 0 ? cores : g_affinity_cores), spin_micros_(spin_budget(threads_, cores_)) {
  try {
    workers_.reserve((size_t)threads_ - 1);
    for (int i = 1; i < threads_; ++i) workers_.emplace_back([this, i] { worker_main(i); });
  } catch (...) {
    // The OS refused a thread (a pids limit, no address space left for its stack). Unwinding
    // would destroy cv_start_ under the workers already waiting on it (a hang) and then
    // joinable threads (std::terminate): stop them first, and let the caller report the failure.
    stop_workers();
    throw;
  }
}

void ThreadPool::stop_workers() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_.store(true, std::memory_order_release);
  }
  cv_start_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

ThreadPool::~ThreadPool() { stop_workers(); }

void ThreadPool::work(int id) {
  for (;;) {
    int64_t t = next_.fetch_add(1, std::memory_order_relaxed);
    if (t >= n_) break;
    fn_(ctx_, t, id);
  }
}

void ThreadPool::worker_main(int id) {
  Awake awake;
  uint64_t seen = 0;
  for (;;) {
    auto ready = [&] { return stop_.load(std::memory_order_acquire) || gen_.load(std::memory_order_acquire) != seen; };
    if (!spin_until(ready, spin_micros_, cores_)) {
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

// busy_ is the region's lock proper; region_mu_ queues the callers that wait, so that only the
// first of them polls. (A try_lock of the mutex would do without the flag, but
// pthread_mutex_trylock is versioned GLIBC_2.34: see runtime_floor.cc.)
namespace {
struct Holding {
  std::atomic<bool>& busy;
  ~Holding() { busy.store(false, std::memory_order_release); }
};
}  // namespace

void ThreadPool::run(int64_t n, void (*fn)(void*, int64_t, int), void* ctx) {
  if (n <= 0) return;
  std::lock_guard<std::mutex> queue(region_mu_);
  // held only by a run_or_inline caller's region here: poll until it ends
  while (busy_.exchange(true, std::memory_order_acquire)) std::this_thread::sleep_for(std::chrono::microseconds(100));
  Holding holding{busy_};
  run_region(n, fn, ctx);
}

void ThreadPool::run_or_inline(int64_t n, void (*fn)(void*, int64_t, int), void* ctx) {
  if (n <= 0) return;
  if (!busy_.exchange(true, std::memory_order_acquire)) {
    Holding holding{busy_};
    return run_region(n, fn, ctx);
  }
  // another caller's region holds the workers: the tasks run here, in order (scratch slot 0 is
  // this call's own, as kernels allocate their scratch per call)
  Awake awake;
  for (int64_t t = 0; t < n; ++t) fn(ctx, t, 0);
}

void ThreadPool::run_region(int64_t n, void (*fn)(void*, int64_t, int), void* ctx) {
  Awake awake;  // (not while it waits for another caller's region)
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
  if (!spin_until(done, spin_micros_, cores_)) {
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
