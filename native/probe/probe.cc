// Probes of the machine's limits. The FMA loop itself lives in each ISA's kernel table
// (impl.h fma_probe_impl: kProbeAcc independent accumulators, so throughput, not latency,
// bounds it); here it is timed on several threads. The read probe streams a buffer larger than
// the caches with wide independent integer accumulators (no FP dependency chain to bound it).
#include "probe.h"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "../include/attention_kernels.h"

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
  std::vector<std::thread> ts;
  for (int i = 1; i < threads; ++i) ts.emplace_back(body, i);
  while (ready.load() < threads - 1) std::this_thread::yield();
  go.store(true);
  body(0);
  for (auto& t : ts) t.join();
  double total = 0;
  for (double r : rates) total += r;
  return total / 1e9;
}

namespace {
uint64_t read_sum(const uint64_t* p, int64_t n) {
  uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    a0 += p[i]; a1 += p[i + 1]; a2 += p[i + 2]; a3 += p[i + 3];
    a4 += p[i + 4]; a5 += p[i + 5]; a6 += p[i + 6]; a7 += p[i + 7];
  }
  for (; i < n; ++i) a0 += p[i];
  return a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
}
}  // namespace

double read_bandwidth_gbs(int64_t bytes, int threads) {
  if (threads < 1) threads = 1;
  if (bytes < (1 << 20)) bytes = 1 << 20;
  const int64_t n = bytes / 8;
  void* mem = nullptr;
  if (posix_memalign(&mem, 64, (size_t)n * 8) != 0 || !mem) return -1;
  uint64_t* buf = (uint64_t*)mem;
  // first touch by the threads that will read (NUMA friendly)
  {
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t)
      ts.emplace_back([=] {
        int64_t lo = n * t / threads, hi = n * (t + 1) / threads;
        for (int64_t i = lo; i < hi; ++i) buf[i] = (uint64_t)i;
      });
    for (auto& t : ts) t.join();
  }
  double best = 0;
  std::atomic<uint64_t> sink{0};
  for (int rep = 0; rep < 5; ++rep) {
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t)
      ts.emplace_back([&, t] {
        int64_t lo = n * t / threads, hi = n * (t + 1) / threads;
        ready.fetch_add(1);
        while (!go.load()) std::this_thread::yield();
        sink.fetch_add(read_sum(buf + lo, hi - lo));
      });
    while (ready.load() < threads) std::this_thread::yield();
    auto t0 = std::chrono::steady_clock::now();
    go.store(true);
    for (auto& t : ts) t.join();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s > 0 && (double)n * 8 / s > best) best = (double)n * 8 / s;
  }
  free(mem);
  return best / 1e9;
}

}  // namespace sa
