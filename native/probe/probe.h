// Machine-limit probes for the benchmark: FP32 FMA peak and memory read bandwidth.
#pragma once
#include <cstdint>

namespace sa {
// GFLOP/s of independent FMA chains with the table of `isa` (nullptr = best), `threads` threads
// running for about `millis` ms each. Returns < 0 on failure.
double fma_peak_gflops(const char* isa, int threads, double millis);
// GB/s (1e9 bytes/s) reading a `bytes` buffer with `threads` threads, best of several passes.
double read_bandwidth_gbs(int64_t bytes, int threads);
}  // namespace sa
