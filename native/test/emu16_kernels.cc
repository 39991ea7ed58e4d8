// Test-only: the shared kernels (impl.h) instantiated over an emulated 16-lane vector, with the
// AVX-512 unit's blocking (4 x 6 attention micro-kernel, 12 x 2 matmul, 128-key flash blocks).
// Each operation is a plain loop over 16 floats, so this runs on any CPU: it checks the template
// code exactly as W = 16 shapes it (64-query blocks, 4-key score groups while decoding, 16 x 16
// transposes) on machines without AVX-512 (qemu does not emulate it). The AVX-512 intrinsics
// themselves are not exercised here; kernel_test runs them where the CPU has AVX-512.
// Never linked into the addon; kernel_test.cc reaches it as the ISA "emu16" when built with
// -DSA_KERNEL_TEST_EMU16 (.ci/native-kernels.sh).
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "../include/attention_kernels.h"

namespace sa {
namespace isa_emu16 {

#include "../kernels/generic/exp2_scalar.h"

struct V {
  struct T {
    float x[16];
  };
  static constexpr int W = 16;
  static inline T zero() { return set1(0.0f); }
  static inline T set1(float s) {
    T r;
    for (int i = 0; i < W; ++i) r.x[i] = s;
    return r;
  }
  static inline T load(const float* p) {
    T r;
    memcpy(r.x, p, sizeof r.x);
    return r;
  }
  static inline void store(float* p, T v) { memcpy(p, v.x, sizeof v.x); }
  static inline T load_partial(const float* p, int n) {
    T r = zero();
    for (int i = 0; i < n && i < W; ++i) r.x[i] = p[i];
    return r;
  }
  static inline void store_partial(float* p, T v, int n) {
    for (int i = 0; i < n && i < W; ++i) p[i] = v.x[i];
  }
  // fused, as the hardware's: one rounding
  static inline T fmadd(T a, T b, T c) {
    for (int i = 0; i < W; ++i) c.x[i] = std::fma(a.x[i], b.x[i], c.x[i]);
    return c;
  }
  static inline T add(T a, T b) {
    for (int i = 0; i < W; ++i) a.x[i] += b.x[i];
    return a;
  }
  static inline T sub(T a, T b) {
    for (int i = 0; i < W; ++i) a.x[i] -= b.x[i];
    return a;
  }
  static inline T mul(T a, T b) {
    for (int i = 0; i < W; ++i) a.x[i] *= b.x[i];
    return a;
  }
  // x86 maxps: the second operand when either is NaN
  static inline T max(T a, T b) {
    for (int i = 0; i < W; ++i) a.x[i] = a.x[i] > b.x[i] ? a.x[i] : b.x[i];
    return a;
  }
  // a tree of adds (maxes), as the AVX-512 reductions do
  static inline float hsum(T v) {
    for (int w = W / 2; w > 0; w /= 2)
      for (int i = 0; i < w; ++i) v.x[i] += v.x[i + w];
    return v.x[0];
  }
  static inline T hsums(const T* a) {
    T r;
    for (int i = 0; i < W; ++i) r.x[i] = hsum(a[i]);
    return r;
  }
  static inline float hmax(T v) {
    for (int w = W / 2; w > 0; w /= 2)
      for (int i = 0; i < w; ++i) v.x[i] = v.x[i] > v.x[i + w] ? v.x[i] : v.x[i + w];
    return v.x[0];
  }
  static inline T hide_lanes_below(T v, int n) {
    for (int i = 0; i < n && i < W; ++i) v.x[i] = -__builtin_inff();
    return v;
  }
  static inline T ninf_to_zero(T v) {
    for (int i = 0; i < W; ++i)
      if (v.x[i] == -__builtin_inff()) v.x[i] = 0.0f;
    return v;
  }
  // the scalar unit's exp2 in every lane: t < -126 gives 0, NaN stays NaN, exp2(0) == 1
  static inline T exp2(T t) {
    for (int i = 0; i < W; ++i) t.x[i] = exp2_scalar(t.x[i]);
    return t;
  }
  static inline void transpose(T* r) {
    for (int i = 0; i < W; ++i)
      for (int j = i + 1; j < W; ++j) {
        const float s = r[i].x[j];
        r[i].x[j] = r[j].x[i];
        r[j].x[i] = s;
      }
  }
};

#define SA_ATT_BK 128
constexpr int kAttMR = 4;
constexpr int kAttNR = 6;
constexpr int kMmMR = 12;
constexpr int kMmNV = 2;
constexpr int kProbeAcc = 16;
static const char* const kIsaName = "emu16";
#define SA_HAVE_TRANSPOSE 1

#include "../kernels/impl.h"

}  // namespace isa_emu16

const KernelTable* kernels_emu16() { return &isa_emu16::kTable; }

}  // namespace sa
