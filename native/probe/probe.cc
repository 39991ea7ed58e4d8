// Probes of the machine's limits. The FMA loop itself lives in each ISA's kernel table
// (impl.h fma_probe_impl: kProbeAcc independent accumulators, so throughput, not latency,
// bounds it); here it is timed on several threads. The read probe streams a buffer with the
// widest loads the CPU has, several streams at once (see "read bandwidth" below).
//
// This file is built with the addon's baseline flags (binding.gyp, CMakeLists.txt), so its
// AVX2 / AVX-512 readers carry their own target attribute and are only called after dispatch.cc
// found the ISA usable. MSVC needs no attribute for intrinsics.
#include "probe.h"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "../include/attention_kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#define SA_PROBE_X86 1
#include <immintrin.h>
#if defined(__GNUC__) || defined(__clang__)
#define SA_PROBE_TARGET(isa) __attribute__((target(isa)))
#else
#define SA_PROBE_TARGET(isa)
#endif
#else
#define SA_PROBE_X86 0
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
#include <arm_neon.h>
#endif
#if defined(_MSC_VER)
#include <malloc.h>  // _aligned_malloc
#endif

namespace sa {

double fma_peak_gflops(const char* isa, int threads, double millis) {
  const KernelTable* kt = kernels_for(isa);
  if (!kt) return -1;
  if (threads < 1) threads = 1;
  if (millis < 1) millis = 1;
  // calibrate: iterations per ~1 ms
  int64_t iters = 1000;
  for (;;) {
    auto t0 = std::chrono::steady_clock::now();
    kt->fma_probe(iters);
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (ms > 2.0 || iters > (int64_t)1 << 32) {
      iters = (int64_t)(iters * (1.0 / (ms > 0 ? ms : 1e-3)));
      if (iters < 1) iters = 1;
      break;
    }
    iters *= 4;
  }
  std::vector<double> rates((size_t)threads, 0.0);
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  auto body = [&](int id) {
    ready.fetch_add(1);
    while (!go.load()) std::this_thread::yield();
    kt->fma_probe(iters);  // warm up (frequency transition)
    double best = 0;
    auto end = std::chrono::steady_clock::now() + std::chrono::microseconds((int64_t)(millis * 1000));
    do {
      auto t0 = std::chrono::steady_clock::now();
      double flops = kt->fma_probe(iters);
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (s > 0 && flops / s > best) best = flops / s;
    } while (std::chrono::steady_clock::now() < end);
    rates[(size_t)id] = best;
  };
  // a thread the system refuses: those started run their probe and are joined (a vector of
  // joinable threads unwinding would terminate the process)
  std::vector<std::thread> ts;
  bool started = true;
  try {
    for (int i = 1; i < threads; ++i) ts.emplace_back(body, i);
  } catch (...) {
    started = false;
  }
  if (started)
    while (ready.load() < threads - 1) std::this_thread::yield();
  go.store(true);
  if (started) body(0);
  for (auto& t : ts) t.join();
  if (!started) return kThreadsRefused;
  double total = 0;
  for (double r : rates) total += r;
  return total / 1e9;
}

// ---- read bandwidth ----------------------------------------------------------------------------
//
// What bounds one core's streaming read rate is how many cache-line misses it keeps in flight,
// not arithmetic: one sequential stream gives the hardware prefetcher one page at a time to run
// ahead on (it stops at 4 KiB page boundaries), and narrow loads take 8 load-queue entries per
// line. Measured on this project's 2-vCPU AVX-512 KVM host (128 MiB, one thread, best of 15):
// one stream of scalar 8-byte loads 10.6 GB/s (the previous probe), one stream of 256-bit loads
// 12.7, of 512-bit loads 14.1-14.8, 4 streams of 512-bit loads 16.5, 8 streams 16.8-17.1 —
// while the decode4k kernel, reading K and V with 512-bit loads from several places at once,
// reached ~12 against the previous probe's ~10.4. So each thread reads its slice as kStreams
// contiguous parts side by side, one 64-byte line of each per step, with the widest loads the
// CPU has, into one independent accumulator per stream (integer adds: one-cycle latency, never
// the bound).
namespace {

constexpr int kStreams = 8;
constexpr int64_t kLine = 64;

// Scalar words of one 64-byte line, summed as a tree (no long chain).
inline uint64_t line_sum(const char* p) {
  uint64_t w[8];
  std::memcpy(w, p, sizeof w);
  return ((w[0] + w[1]) + (w[2] + w[3])) + ((w[4] + w[5]) + (w[6] + w[7]));
}

// The lines past kStreams·seg (fewer than kStreams of them), read plainly.
inline uint64_t tail_sum(const char* p, int64_t from, int64_t bytes) {
  uint64_t a = 0;
  for (int64_t i = from; i < bytes; i += kLine) a += line_sum(p + i);
  return a;
}

// Every reader takes a whole number of lines (`bytes` % 64 == 0), returns the sum of its words.
using ReadFn = uint64_t (*)(const char*, int64_t);

// Portable: scalar words (the compiler may widen it); NEON on aarch64, where it is baseline.
uint64_t read_portable(const char* p, int64_t bytes) {
  const int64_t seg = bytes / (kStreams * kLine) * kLine;
#if defined(__aarch64__) || defined(_M_ARM64)
  uint64x2_t a[kStreams];
  for (int s = 0; s < kStreams; ++s) a[s] = vdupq_n_u64(0);
  for (int64_t i = 0; i < seg; i += kLine)
    for (int s = 0; s < kStreams; ++s) {
      const uint64_t* q = (const uint64_t*)(p + s * seg + i);
      a[s] = vaddq_u64(a[s], vaddq_u64(vaddq_u64(vld1q_u64(q), vld1q_u64(q + 2)),
                                       vaddq_u64(vld1q_u64(q + 4), vld1q_u64(q + 6))));
    }
  uint64_t r = 0;
  for (int s = 0; s < kStreams; ++s) r += vgetq_lane_u64(a[s], 0) + vgetq_lane_u64(a[s], 1);
#else
  uint64_t a[kStreams] = {};
  for (int64_t i = 0; i < seg; i += kLine)
    for (int s = 0; s < kStreams; ++s) a[s] += line_sum(p + s * seg + i);
  uint64_t r = 0;
  for (int s = 0; s < kStreams; ++s) r += a[s];
#endif
  return r + tail_sum(p, kStreams * seg, bytes);
}

#if SA_PROBE_X86
// Chosen only when dispatch.cc's CPUID + XGETBV check passed (best_isa()), so the target
// attribute is safe on a baseline-flags translation unit.
SA_PROBE_TARGET("avx2") uint64_t read_avx2(const char* p, int64_t bytes) {
  const int64_t seg = bytes / (kStreams * kLine) * kLine;
  __m256i a[kStreams];
  for (int s = 0; s < kStreams; ++s) a[s] = _mm256_setzero_si256();
  for (int64_t i = 0; i < seg; i += kLine)
    for (int s = 0; s < kStreams; ++s) {
      const char* q = p + s * seg + i;
      a[s] = _mm256_add_epi64(a[s], _mm256_add_epi64(_mm256_loadu_si256((const __m256i*)q),
                                                     _mm256_loadu_si256((const __m256i*)(q + 32))));
    }
  for (int s = 1; s < kStreams; ++s) a[0] = _mm256_add_epi64(a[0], a[s]);
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256((__m256i*)lanes, a[0]);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3] + tail_sum(p, kStreams * seg, bytes);
}

SA_PROBE_TARGET("avx512f") uint64_t read_avx512(const char* p, int64_t bytes) {
  const int64_t seg = bytes / (kStreams * kLine) * kLine;
  __m512i a[kStreams];
  for (int s = 0; s < kStreams; ++s) a[s] = _mm512_setzero_si512();
  for (int64_t i = 0; i < seg; i += kLine)
    for (int s = 0; s < kStreams; ++s)
      a[s] = _mm512_add_epi64(a[s], _mm512_loadu_si512((const void*)(p + s * seg + i)));
  for (int s = 1; s < kStreams; ++s) a[0] = _mm512_add_epi64(a[0], a[s]);
  alignas(64) uint64_t lanes[8];
  _mm512_store_si512((void*)lanes, a[0]);
  uint64_t r = 0;
  for (int l = 0; l < 8; ++l) r += lanes[l];
  return r + tail_sum(p, kStreams * seg, bytes);
}
#endif

ReadFn pick_reader() {
#if SA_PROBE_X86
  const char* isa = best_isa();
  if (!std::strcmp(isa, "avx512")) return read_avx512;
  if (!std::strcmp(isa, "avx2")) return read_avx2;
#endif
  return read_portable;
}

void* aligned_alloc_bytes(size_t bytes) {
#if defined(_MSC_VER)
  return _aligned_malloc(bytes, 4096);
#else
  void* p = nullptr;
  return posix_memalign(&p, 4096, bytes) == 0 ? p : nullptr;
#endif
}

void aligned_free_bytes(void* p) {
#if defined(_MSC_VER)
  _aligned_free(p);
#else
  free(p);
#endif
}

// Threads already running meet here before and after every timed pass, so no pass includes
// thread start or join. Spins with yield (a pass lasts milliseconds; no futex wake-up latency
// skews the start). `abort` releases everyone if a thread could not be started.
class SpinBarrier {
 public:
  explicit SpinBarrier(int n) : n_(n) {}
  void wait() {
    const int g = gen_.load(std::memory_order_acquire);
    if (count_.fetch_add(1, std::memory_order_acq_rel) == n_ - 1) {
      count_.store(0, std::memory_order_relaxed);
      gen_.fetch_add(1, std::memory_order_release);
      return;
    }
    while (gen_.load(std::memory_order_acquire) == g && !abort_.load(std::memory_order_acquire))
      std::this_thread::yield();
  }
  void abort() { abort_.store(true, std::memory_order_release); }
  bool aborted() const { return abort_.load(std::memory_order_acquire); }

 private:
  const int n_;
  std::atomic<int> count_{0};
  std::atomic<int> gen_{0};
  std::atomic<bool> abort_{false};
};

// Runs body(t) on `threads` threads, t = 0 on the caller. False when a thread could not be
// started: the barrier is aborted so those already running leave it and return.
template <class Body>
bool run_threads(int threads, SpinBarrier& bar, const Body& body) {
  std::vector<std::thread> ts;
  bool started = true;
  try {
    for (int t = 1; t < threads; ++t) ts.emplace_back(body, t);
  } catch (...) {
    started = false;
    bar.abort();
  }
  if (started) body(0);
  for (auto& th : ts) th.join();
  return started;
}

// Each thread timed only its own reading, started together at a barrier: the pass took from the
// first thread's start to the last one's end. (Not the sum of the threads' rates: with more
// threads than cores their reads need not overlap.)
double pass_seconds(const std::vector<std::chrono::steady_clock::time_point>& begin,
                    const std::vector<std::chrono::steady_clock::time_point>& end) {
  auto b = begin[0], e = end[0];
  for (size_t u = 1; u < begin.size(); ++u) {
    if (begin[u] < b) b = begin[u];
    if (end[u] > e) e = end[u];
  }
  return std::chrono::duration<double>(e - b).count();
}

// Passes: at least kMinPasses, and more until kMinSeconds of timed reading (a 128 MiB buffer
// gets ~30 passes, 1 GiB ~8): the result is the best pass, so a pass slowed by another
// process on this shared machine does not lower it.
constexpr int kMinPasses = 8;
constexpr int kMaxPasses = 200;
constexpr double kMinSeconds = 0.25;

}  // namespace

double read_bandwidth_gbs(int64_t bytes, int threads) {
  if (threads < 1) threads = 1;
  if (bytes < (1 << 20)) bytes = 1 << 20;
  const int64_t lines = bytes / kLine;
  char* buf = (char*)aligned_alloc_bytes((size_t)(lines * kLine));
  if (!buf) return -1;
  const ReadFn read = pick_reader();
  // slice of thread t: whole lines, so every reader sees a multiple of 64 bytes
  auto lo = [&](int t) { return lines * t / threads * kLine; };

  SpinBarrier bar(threads);
  using Clock = std::chrono::steady_clock;
  std::vector<Clock::time_point> t_begin((size_t)threads), t_end((size_t)threads);
  std::atomic<bool> more{true};
  std::atomic<uint64_t> sink{0};
  double best = 0;

  auto body = [&](int t) {
    char* p = buf + lo(t);
    const int64_t n = lo(t + 1) - lo(t);
    // First touch by the thread that reads the slice (NUMA), written with a non-zero value so
    // that every page is really allocated: untouched pages would all read the one zero page,
    // which sits in the cache.
    std::memset(p, 0x5a, (size_t)n);
    uint64_t s = read(p, n);  // untimed warm-up pass: TLB, clock frequency
    double elapsed = 0;
    for (int pass = 0;; ++pass) {
      bar.wait();
      if (bar.aborted()) break;
      t_begin[(size_t)t] = Clock::now();
      s += read(p, n);
      t_end[(size_t)t] = Clock::now();
      bar.wait();
      if (t == 0) {
        const double sec = pass_seconds(t_begin, t_end);
        if (sec > 0 && (double)(lines * kLine) / sec > best) best = (double)(lines * kLine) / sec;
        elapsed += sec;
        more.store((pass + 1 < kMinPasses || elapsed < kMinSeconds) && pass + 1 < kMaxPasses);
      }
      bar.wait();
      if (!more.load() || bar.aborted()) break;
    }
    sink.fetch_add(s);  // keeps the reads from being optimised away
  };

  const bool started = run_threads(threads, bar, body);
  aligned_free_bytes(buf);
  return started ? best / 1e9 : kThreadsRefused;
}

double read_regions_seconds(const char* const* ptrs, const int64_t* bytes, int n, int threads) {
  if (threads < 1) threads = 1;
  const ReadFn read = pick_reader();
  SpinBarrier bar(threads);
  using Clock = std::chrono::steady_clock;
  std::vector<Clock::time_point> t_begin((size_t)threads), t_end((size_t)threads);
  std::atomic<uint64_t> sink{0};

  auto body = [&](int t) {
    bar.wait();
    if (bar.aborted()) return;
    t_begin[(size_t)t] = Clock::now();
    uint64_t s = 0;
    for (int r = 0; r < n; ++r) {
      const int64_t lines = bytes[r] / kLine;
      const int64_t lo = lines * t / threads * kLine, hi = lines * (t + 1) / threads * kLine;
      s += read(ptrs[r] + lo, hi - lo);
      // the last partial line (fewer than 64 bytes)
      if (t == threads - 1)
        for (int64_t i = lines * kLine; i < bytes[r]; ++i) s += (unsigned char)ptrs[r][i];
    }
    t_end[(size_t)t] = Clock::now();
    sink.fetch_add(s);  // keeps the reads from being optimised away
  };

  return run_threads(threads, bar, body) ? pass_seconds(t_begin, t_end) : -1;
}

}  // namespace sa
