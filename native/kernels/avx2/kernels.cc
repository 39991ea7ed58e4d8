// AVX2 + FMA kernels (compiled with -mavx2 -mfma; only called when dispatch.cc has checked
// CPUID for AVX2 and FMA and XGETBV for the OS saving YMM state).
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "../../include/attention_kernels.h"
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

namespace sa {
namespace isa_avx2 {

struct V {
  using T = __m256;
  static constexpr int W = 8;
  static inline __m256i lanes_lt(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static inline T zero() { return _mm256_setzero_ps(); }
  static inline T set1(float x) { return _mm256_set1_ps(x); }
  static inline T load(const float* p) { return _mm256_loadu_ps(p); }
  static inline void store(float* p, T v) { _mm256_storeu_ps(p, v); }
  static inline T load_partial(const float* p, int n) { return _mm256_maskload_ps(p, lanes_lt(n)); }
  static inline void store_partial(float* p, T v, int n) { _mm256_maskstore_ps(p, lanes_lt(n), v); }
  static inline T fmadd(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
  static inline T add(T a, T b) { return _mm256_add_ps(a, b); }
  static inline T sub(T a, T b) { return _mm256_sub_ps(a, b); }
  static inline T mul(T a, T b) { return _mm256_mul_ps(a, b); }
  static inline T max(T a, T b) { return _mm256_max_ps(a, b); }
  static inline float hsum(T v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  // lane i = hsum(a[i]) for the W vectors a[0..W): pairs summed within 128-bit halves, then the halves
  static inline T hsums(const T* a) {
    T t[4], u[2];
    for (int i = 0; i < 4; ++i) t[i] = _mm256_add_ps(_mm256_unpacklo_ps(a[2 * i], a[2 * i + 1]), _mm256_unpackhi_ps(a[2 * i], a[2 * i + 1]));
    for (int i = 0; i < 2; ++i) u[i] = _mm256_add_ps(_mm256_shuffle_ps(t[2 * i], t[2 * i + 1], 0x44), _mm256_shuffle_ps(t[2 * i], t[2 * i + 1], 0xEE));
    return _mm256_add_ps(_mm256_permute2f128_ps(u[0], u[1], 0x20), _mm256_permute2f128_ps(u[0], u[1], 0x31));
  }
  static inline float hmax(T v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static inline T hide_lanes_below(T v, int n) {
    return _mm256_blendv_ps(v, _mm256_set1_ps(-__builtin_inff()), _mm256_castsi256_ps(lanes_lt(n)));
  }
  static inline T ninf_to_zero(T v) {
    return _mm256_andnot_ps(_mm256_cmp_ps(v, _mm256_set1_ps(-__builtin_inff()), _CMP_EQ_OQ), v);
  }
  // 2^t = p(f) * 2^n, n = round(t), f = t - n in [-0.5, 0.5]. Rounding by adding 1.5 * 2^23
  // (the sum's low mantissa bits are n itself) keeps the range reduction on the adders, with no
  // vroundps or vcvtps2dq; 2^n is applied by adding n << 23 to p's exponent field. t < -126
  // gives exactly 0 through `keep` (which also clears whatever the reduction made of -Infinity
  // or a huge negative t); with t >= -126, n >= -126 and p(f) >= 1 when n = -126, so the
  // exponent field stays normal; NaN stays NaN (kept, and the sum is NaN).
  static inline T exp2(T t) {
    const T keep = _mm256_cmp_ps(t, _mm256_set1_ps(-126.0f), _CMP_NLT_UQ);
    const T magic = _mm256_set1_ps(12582912.0f);  // 1.5 * 2^23
    const T y = _mm256_add_ps(t, magic);
    const T f = _mm256_sub_ps(t, _mm256_sub_ps(y, magic));
    T p = _mm256_set1_ps(1.535336188319500e-4f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.339887440266574e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.618437357674640e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.550332471162809e-2f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.402264791363012e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.931472028550421e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(y), 23);
    return _mm256_and_ps(_mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), e)), keep);
  }
  // in-place transpose of a W x W (8 x 8) block held in r[0..W): pairs within 128-bit lanes,
  // then quads, then the 128-bit halves
  static inline void transpose(T* r) {
    __m256 t[8];
    for (int i = 0; i < 8; i += 2) {
      t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
      r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
      r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
      r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
      r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; ++i) {
      t[i] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x20);
      t[i + 4] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x31);
    }
    for (int i = 0; i < 8; ++i) r[i] = t[i];
  }
};

#ifndef SA_ATT_BK
#define SA_ATT_BK 128  // keys per flash block: half the per-block bookkeeping of 64 (enc128 in one block)
#endif
constexpr int kAttMR = 2;   // 16 queries
constexpr int kAttNR = 6;   // 12 accumulators
constexpr int kMmMR = 6;
constexpr int kMmNV = 2;
constexpr int kProbeAcc = 12;
static const char* const kIsaName = "avx2";
#define SA_HAVE_TRANSPOSE 1

#include "../impl.h"

}  // namespace isa_avx2

const KernelTable* kernels_avx2() { return &isa_avx2::kTable; }

}  // namespace sa
#endif
