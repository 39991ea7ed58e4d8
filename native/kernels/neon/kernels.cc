// NEON (AArch64 Advanced SIMD) kernels. AArch64 always has NEON with FMA.
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "../../include/attention_kernels.h"
#if defined(__aarch64__) || defined(_M_ARM64)
#include <arm_neon.h>

namespace sa {
namespace isa_neon {

struct V {
  using T = float32x4_t;
  static constexpr int W = 4;
  static inline uint32x4_t lanes_lt(int n) {
    static const uint32_t iota[4] = {0, 1, 2, 3};
    return vcltq_u32(vld1q_u32(iota), vdupq_n_u32((uint32_t)n));
  }
  static inline T zero() { return vdupq_n_f32(0.0f); }
  static inline T set1(float x) { return vdupq_n_f32(x); }
  static inline T load(const float* p) { return vld1q_f32(p); }
  static inline void store(float* p, T v) { vst1q_f32(p, v); }
  static inline T load_partial(const float* p, int n) {
    float tmp[4] = {0, 0, 0, 0};
    for (int i = 0; i < n && i < 4; ++i) tmp[i] = p[i];
    return vld1q_f32(tmp);
  }
  static inline void store_partial(float* p, T v, int n) {
    float tmp[4];
    vst1q_f32(tmp, v);
    for (int i = 0; i < n && i < 4; ++i) p[i] = tmp[i];
  }
  static inline T fmadd(T a, T b, T c) { return vfmaq_f32(c, a, b); }
  static inline T add(T a, T b) { return vaddq_f32(a, b); }
  static inline T sub(T a, T b) { return vsubq_f32(a, b); }
  static inline T mul(T a, T b) { return vmulq_f32(a, b); }
  static inline T max(T a, T b) { return vmaxq_f32(a, b); }  // FMAX propagates NaN
  static inline float hsum(T v) { return vaddvq_f32(v); }
  // lane i = hsum(a[i]) for the W vectors a[0..W)
  static inline T hsums(const T* a) { return vpaddq_f32(vpaddq_f32(a[0], a[1]), vpaddq_f32(a[2], a[3])); }
  static inline float hmax(T v) { return vmaxvq_f32(v); }
  static inline T hide_lanes_below(T v, int n) { return vbslq_f32(lanes_lt(n), vdupq_n_f32(-__builtin_inff()), v); }
  static inline T ninf_to_zero(T v) { return vbslq_f32(vceqq_f32(v, vdupq_n_f32(-__builtin_inff())), vdupq_n_f32(0.0f), v); }
  static inline T exp2(T t) {
    uint32x4_t under = vcltq_f32(t, vdupq_n_f32(-126.0f));  // false for NaN
    t = vmaxq_f32(vdupq_n_f32(-127.0f), t);
    T n = vrndnq_f32(t);
    T f = vsubq_f32(t, n);
    T p = vdupq_n_f32(1.535336188319500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.339887440266574e-3f), p, f);
    p = vfmaq_f32(vdupq_n_f32(9.618437357674640e-3f), p, f);
    p = vfmaq_f32(vdupq_n_f32(5.550332471162809e-2f), p, f);
    p = vfmaq_f32(vdupq_n_f32(2.402264791363012e-1f), p, f);
    p = vfmaq_f32(vdupq_n_f32(6.931472028550421e-1f), p, f);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, f);
    int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    T r = vmulq_f32(p, vreinterpretq_f32_s32(e));
    return vbslq_f32(under, vdupq_n_f32(0.0f), r);
  }
};

constexpr int kAttMR = 4;   // 16 queries
constexpr int kAttNR = 6;   // 24 accumulators
constexpr int kMmMR = 6;
constexpr int kMmNV = 4;
constexpr int kProbeAcc = 16;
static const char* const kIsaName = "neon";

#include "../impl.h"

}  // namespace isa_neon

const KernelTable* kernels_neon() { return &isa_neon::kTable; }

}  // namespace sa
#endif
