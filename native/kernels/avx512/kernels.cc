// AVX-512 (F, BW, VL, DQ) kernels, compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq
// -mfma; only called when dispatch.cc has checked CPUID and XGETBV (opmask + ZMM state).
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "../../include/attention_kernels.h"
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

namespace sa {
namespace isa_avx512 {

struct V {
  using T = __m512;
  static constexpr int W = 16;
  static inline __mmask16 lanes_lt(int n) { return (__mmask16)((1u << n) - 1u); }
  static inline T zero() { return _mm512_setzero_ps(); }
  static inline T set1(float x) { return _mm512_set1_ps(x); }
  static inline T load(const float* p) { return _mm512_loadu_ps(p); }
  static inline void store(float* p, T v) { _mm512_storeu_ps(p, v); }
  static inline T load_partial(const float* p, int n) { return _mm512_maskz_loadu_ps(lanes_lt(n), p); }
  static inline void store_partial(float* p, T v, int n) { _mm512_mask_storeu_ps(p, lanes_lt(n), v); }
  static inline T fmadd(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
  static inline T add(T a, T b) { return _mm512_add_ps(a, b); }
  static inline T sub(T a, T b) { return _mm512_sub_ps(a, b); }
  static inline T mul(T a, T b) { return _mm512_mul_ps(a, b); }
  static inline T max(T a, T b) { return _mm512_max_ps(a, b); }
  static inline float hsum(T v) { return _mm512_reduce_add_ps(v); }
  static inline float hmax(T v) { return _mm512_reduce_max_ps(v); }
  static inline T hide_lanes_below(T v, int n) { return _mm512_mask_mov_ps(v, lanes_lt(n), _mm512_set1_ps(-__builtin_inff())); }
  static inline T ninf_to_zero(T v) {
    __mmask16 k = _mm512_cmp_ps_mask(v, _mm512_set1_ps(-__builtin_inff()), _CMP_EQ_OQ);
    return _mm512_mask_mov_ps(v, k, _mm512_setzero_ps());
  }
  static inline T exp2(T t) {
    __mmask16 keep = _mm512_cmp_ps_mask(t, _mm512_set1_ps(-126.0f), _CMP_NLT_UQ);  // NaN kept
    T n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    T f = _mm512_sub_ps(t, n);
    T p = _mm512_set1_ps(1.535336188319500e-4f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.339887440266574e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.618437357674640e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550332471162809e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.402264791363012e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931472028550421e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(keep, p, n);
  }
};

#ifndef SA_MR
#define SA_MR 4
#define SA_NR 6
#endif
constexpr int kAttMR = SA_MR;   // 64 queries
constexpr int kAttNR = SA_NR;   // 24 accumulators
constexpr int kMmMR = 6;
constexpr int kMmNV = 4;
constexpr int kProbeAcc = 16;
static const char* const kIsaName = "avx512";

#include "../impl.h"

}  // namespace isa_avx512

const KernelTable* kernels_avx512() { return &isa_avx512::kTable; }

}  // namespace sa
#endif
