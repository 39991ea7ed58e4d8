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
  // lane i = hsum(a[i]) for the W vectors a[0..W): pairs summed within 128-bit blocks, then the
  // blocks (45 operations for 16 sums, where 16 hsum calls take about 130)
  static inline T hsums(const T* a) {
    T t[8], u[4];
    for (int i = 0; i < 8; ++i) t[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]), _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
    for (int i = 0; i < 4; ++i) u[i] = _mm512_add_ps(_mm512_shuffle_ps(t[2 * i], t[2 * i + 1], 0x44), _mm512_shuffle_ps(t[2 * i], t[2 * i + 1], 0xEE));
    // u[i]: in 128-bit block b, lane m holds block b's sum of a[4i + m]; now add the blocks
    const T w01 = _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], 0x88), _mm512_shuffle_f32x4(u[0], u[1], 0xDD));
    const T w23 = _mm512_add_ps(_mm512_shuffle_f32x4(u[2], u[3], 0x88), _mm512_shuffle_f32x4(u[2], u[3], 0xDD));
    return _mm512_add_ps(_mm512_shuffle_f32x4(w01, w23, 0x88), _mm512_shuffle_f32x4(w01, w23, 0xDD));
  }
  static inline float hmax(T v) { return _mm512_reduce_max_ps(v); }
  static inline T hide_lanes_below(T v, int n) { return _mm512_mask_mov_ps(v, lanes_lt(n), _mm512_set1_ps(-__builtin_inff())); }
  static inline T ninf_to_zero(T v) {
    __mmask16 k = _mm512_cmp_ps_mask(v, _mm512_set1_ps(-__builtin_inff()), _CMP_EQ_OQ);
    return _mm512_mask_mov_ps(v, k, _mm512_setzero_ps());
  }
  // 2^t = p(f) * 2^floor(t) with f = t - floor(t) in [0, 1): vreduceps gives f in one
  // instruction and vscalefps floors t itself, so no separate rounding or subtraction.
  // p: degree-6 fit of 2^f on [0, 1) with p(0) = 1 exactly (so exp2(0) == 1).
  static inline T exp2(T t) {
    __mmask16 keep = _mm512_cmp_ps_mask(t, _mm512_set1_ps(-126.0f), _CMP_NLT_UQ);  // NaN kept
    T f = _mm512_reduce_ps(t, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    T p = _mm512_set1_ps(2.1612852287944406e-4f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.2467863271012902e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.675449691712856e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5485282093286514e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.402293086051941e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931470632553101e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(keep, p, t);
  }
  // in-place transpose of a W x W block held in r[0..W)
  static inline void transpose(T* r) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
      t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
      r[i] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
      r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
      r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
      r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; ++i) {
      t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
      t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
      t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
      t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 4; ++i) {
      r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
      r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
      r[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
      r[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xdd);
    }
  }
};

#ifndef SA_ATT_BK
#define SA_ATT_BK 128  // keys per flash block: halves the per-block softmax bookkeeping of 64
#endif
#ifndef SA_MR
#define SA_MR 4
#define SA_NR 6
#endif
constexpr int kAttMR = SA_MR;   // 64 queries
constexpr int kAttNR = SA_NR;   // 24 accumulators
#ifndef SA_MM_MR
#define SA_MM_MR 12  // 12 rows x 2 vectors: 24 accumulators, 2 panel loads + 12 broadcasts per step
#define SA_MM_NV 2
#endif
constexpr int kMmMR = SA_MM_MR;
constexpr int kMmNV = SA_MM_NV;
constexpr int kProbeAcc = 16;
static const char* const kIsaName = "avx512";
#define SA_HAVE_TRANSPOSE 1

#include "../impl.h"

}  // namespace isa_avx512

const KernelTable* kernels_avx512() { return &isa_avx512::kTable; }

}  // namespace sa
#endif
