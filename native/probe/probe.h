// Machine-limit probes for the benchmark: FP32 FMA peak and memory read bandwidth.
#pragma once
#include <cstdint>

namespace sa {
// what a probe returns when the system would not start one of its threads (other failures: -1)
constexpr double kThreadsRefused = -2;
// GFLOP/s of independent FMA chains with the table of `isa` (nullptr = best), `threads` threads
// running for about `millis` ms each. Returns < 0 on failure.
double fma_peak_gflops(const char* isa, int threads, double millis);
// GB/s (1e9 bytes/s) reading a `bytes` buffer with `threads` threads: each thread reads its own
// slice with the widest loads the CPU has, several streams at once, and times its own reading in
// passes that all threads start together (thread start/join and first touch are not timed);
// the result is the best pass: all bytes / (first thread's start .. last thread's end).
// Returns < 0 on failure.
double read_bandwidth_gbs(int64_t bytes, int threads);
// Seconds of one pass reading the `n` given regions (ptrs[i], bytes[i] bytes) with `threads`
// threads, each taking the same share of every region, with the readers above. Nothing is
// touched before the timed pass, so the regions are read in whatever cache state the caller
// left them: timed right after a kernel that read the same memory, the two are like for like.
// Returns < 0 on failure (a thread could not start).
double read_regions_seconds(const char* const* ptrs, const int64_t* bytes, int n, int threads);
}  // namespace sa
