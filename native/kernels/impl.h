// The kernels, written once over a small vector-traits type and compiled once per ISA.
//
// Included by native/kernels/<isa>/kernels.cc INSIDE a namespace of its own (sa::isa_<name>),
// after that file defines:
//   struct V            vector traits (see generic/kernels.cc for the list of operations)
//   kAttMR, kAttNR      attention micro-kernel: kAttMR vectors of queries x kAttNR keys / columns
//   kMmMR, kMmNV        matmul micro-kernel: kMmMR rows x kMmNV vectors of columns
//   kProbeAcc           independent accumulators of the FMA probe
// Everything here lives in that namespace, so no inline or template code compiled with one
// ISA's flags can be merged by the linker with another's. No std:: templates are used here.
//
// exp: a degree-6 polynomial for 2^f in FMA (Horner) form times 2^n; t < -126 gives exactly 0
// (no denormals reach the P·V products), NaN stays NaN. AVX2, NEON and scalar: f = t - round(t)
// in [-0.5, 0.5] (cephes exp2f coefficients), 2^n through the exponent bits (AVX2 rounds by
// adding 1.5·2^23 and takes n from the sum's low bits, all on the adders). AVX-512: f = t -
// floor(t) in [0, 1) from one vreduceps, and vscalefps applies 2^floor(t) itself (no rounding
// and no subtraction: two fewer vector ops per exp); its polynomial is a minimax-style fit on
// [0, 1) with p(0) = 1 exactly, so exp2(0) == 1 (the online softmax relies on alpha == 1 when
// the reference max did not move). Measured maximum relative error over [-126, 0]
// (native/test/kernel_test.cc, asserted < 5e-7): 7.4e-8 avx512, 7.7e-8 avx2 and neon, 1.0e-7
// scalar — below float32's epsilon (1.19e-7).
//
// Attention works in base 2: Q is packed pre-multiplied by scale*log2(e) (and an additive mask
// by log2(e)), so every softmax exponential is an exp2.
//
// Determinism: every output element is computed by the same sequence of operations whatever
// the thread count. Tasks partition outputs; the key split used for decoding uses fixed-size
// chunks (a function of the shape only) combined in a fixed order.

// (the including file includes <cstdlib>, <cstring> and <cmath> before its namespace)

#define SA_UNROLL _Pragma("GCC unroll 32")

using T = V::T;
constexpr int W = V::W;
constexpr int BQ = kAttMR * W;  // queries per attention block (flash path)
constexpr int MM_NB = kMmNV * W;  // columns per matmul panel
#ifndef SA_MM_KC
#define SA_MM_KC 256
#endif
#ifndef SA_MM_MC
#define SA_MM_MC 96
#endif
constexpr int64_t MM_KC = SA_MM_KC;  // depth per matmul pass
constexpr int64_t MM_MC = SA_MM_MC;  // rows per matmul task
constexpr int64_t kStripMaxRowBlocks = 6;  // matmul: B packed inside the tasks up to this many row blocks per B
#ifndef SA_MM_PFL
#define SA_MM_PFL 2  // locality of the packed-B prefetch (2: prefetcht1, towards L2)
#endif
#ifndef SA_ATT_BK
#define SA_ATT_BK 64
#endif
constexpr int64_t ATT_BK = SA_ATT_BK;  // keys per block (flash path, no weights)
// Long sums (a row's weights, its weighted values) are formed kSumKeys terms at a time, each
// piece from zero, then added up: one running sum rounds every term at the size of the whole.
constexpr int64_t kSumKeys = 256;
// The attention micro-kernels' depth loops are unrolled: the loop's own counter and pointer
// updates can take an FMA port's slot, and unrolled they come once per SA_ATT_UNR steps
// (+3-4% on long2k and enc512 here, in paired runs; 2 and 8 measured the same as 4 within noise).
#ifndef SA_ATT_UNR
#define SA_ATT_UNR 4
#endif
#define SA_PRAGMA_(x) _Pragma(#x)
#define SA_UNROLL_N_(n) SA_PRAGMA_(GCC unroll n)
#define SA_UNROLL_N(n) SA_UNROLL_N_(n)
#define SA_ATT_UNROLL SA_UNROLL_N(SA_ATT_UNR)
constexpr int64_t DIRECT_MAX_SQ = 8;      // fewer queries than this: the direct (decode) path
constexpr int64_t SPLIT_MIN_SK = 2048;    // decode key split: only for at least this many keys
constexpr int64_t SPLIT_CHUNK = 512;      //   in chunks of this many keys
constexpr int64_t SPLIT_MAX_TASKS = 64;   //   and only when fewer (b, kv head) tasks than this
constexpr float kLog2e = 1.44269504088896340736f;
constexpr float kRescaleSlack = 8.0f;  // flash path: P <= 2^8 before the reference max moves
static const float kNegInf = -__builtin_inff();

static inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t iclamp(int64_t x, int64_t lo, int64_t hi) { return x < lo ? lo : (x > hi ? hi : x); }

// a * b for counts (>= 0), or -1 when the product passes int64: falloc then refuses it
static inline int64_t count_mul(int64_t a, int64_t b) {
  if (a < 0 || b < 0) return -1;
  return (a != 0 && b > INT64_MAX / a) ? -1 : a * b;
}
static inline int64_t count_mul(int64_t a, int64_t b, int64_t c) { return count_mul(count_mul(a, b), c); }

// n floats, 64-byte aligned; nullptr when they cannot be had (a count of -1 included: an overflow)
static float* falloc(int64_t n) {
  if (n < 0 || (uint64_t)n > (SIZE_MAX - 63) / sizeof(float)) return nullptr;
  if (n == 0) n = 1;
  size_t bytes = (size_t)n * sizeof(float);
  bytes = (bytes + 63) & ~(size_t)63;
  void* p = nullptr;
#if defined(_WIN32)
  p = _aligned_malloc(bytes, 64);
#else
  if (posix_memalign(&p, 64, bytes) != 0) p = nullptr;
#endif
  return (float*)p;
}
static void ffree(void* p) {
#if defined(_WIN32)
  _aligned_free(p);
#else
  free(p);
#endif
}

// Per-worker scratch buffers, allocated before a parallel run and freed after it.
struct Scratch {
  float** bufs = nullptr;
  int n = 0;
  bool alloc(int workers, int64_t floats) {
    n = workers;
    bufs = (float**)calloc((size_t)workers, sizeof(float*));
    if (!bufs) return false;
    for (int i = 0; i < workers; ++i) {
      bufs[i] = falloc(floats);
      if (!bufs[i]) return false;
    }
    return true;
  }
  ~Scratch() {
    if (bufs) {
      for (int i = 0; i < n; ++i) ffree(bufs[i]);
      free(bufs);
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Attention: flash path (queries on vector lanes; K and V read in place through broadcasts)
// ---------------------------------------------------------------------------------------------

// st[n][q] = init[q] + sum_d qt[d][q] * k_n[d]   for n < N keys, q < BQ (init == nullptr: 0)
template <int N, int MR>
static inline void qk_tile(const float* __restrict qt, const float* __restrict k0, int64_t ks, int64_t D,
                           float* __restrict st, float* __restrict tmax, const float* __restrict init) {
  T acc[N][MR];
  if (init) {
    SA_UNROLL for (int m = 0; m < MR; ++m) {
      const T iv = V::load(init + m * W);
      SA_UNROLL for (int n = 0; n < N; ++n) acc[n][m] = iv;
    }
  } else {
    SA_UNROLL for (int n = 0; n < N; ++n) SA_UNROLL for (int m = 0; m < MR; ++m) acc[n][m] = V::zero();
  }
  const float* kp[N];
  SA_UNROLL for (int n = 0; n < N; ++n) kp[n] = k0 + n * ks;
  SA_ATT_UNROLL for (int64_t d = 0; d < D; ++d) {
    T qv[MR];
    SA_UNROLL for (int m = 0; m < MR; ++m) qv[m] = V::load(qt + d * BQ + m * W);
    SA_UNROLL for (int n = 0; n < N; ++n) {
      T b = V::set1(kp[n][d]);
      SA_UNROLL for (int m = 0; m < MR; ++m) acc[n][m] = V::fmadd(qv[m], b, acc[n][m]);
    }
  }
  SA_UNROLL for (int n = 0; n < N; ++n) SA_UNROLL for (int m = 0; m < MR; ++m) V::store(st + n * BQ + m * W, acc[n][m]);
  // fused running max over these keys (used when no mask is applied to the tile afterwards)
  SA_UNROLL for (int m = 0; m < MR; ++m) {
    T mx = V::load(tmax + m * W);
    SA_UNROLL for (int n = 0; n < N; ++n) mx = V::max(mx, acc[n][m]);
    V::store(tmax + m * W, mx);
  }
}

// ot[n][q] += sum_j pt[j][q] * v_j[c0 + n]   for n < N columns (the online-softmax rescale of
// ot, when the running max moved, is a separate pass: it is rare). The block's sums start at zero
// and are added to ot at the end: summed onto ot itself, every product of a long row was rounded
// at the size of the whole running sum (a relative error growing with Sk: 1.4e-5 at 131k keys,
// test/long-rows); so only a piece's products (at most kSumKeys) and the row's piece sums are.
template <int N, int MR>
static inline void pv_tile(const float* __restrict pt, int64_t nk, const float* __restrict v0, int64_t vs,
                           float* __restrict ot) {
  // a block longer than kSumKeys (with weights the block is the whole row) in pieces of it
  for (int64_t j0 = 0; j0 < nk; j0 += kSumKeys) {
    const int64_t j1 = imin(nk, j0 + kSumKeys);
    T acc[N][MR];
    SA_UNROLL for (int n = 0; n < N; ++n) SA_UNROLL for (int m = 0; m < MR; ++m) acc[n][m] = V::zero();
    SA_ATT_UNROLL for (int64_t j = j0; j < j1; ++j) {
      T pv[MR];
      SA_UNROLL for (int m = 0; m < MR; ++m) pv[m] = V::load(pt + j * BQ + m * W);
      const float* vr = v0 + j * vs;
      SA_UNROLL for (int n = 0; n < N; ++n) {
        T b = V::set1(vr[n]);
        SA_UNROLL for (int m = 0; m < MR; ++m) acc[n][m] = V::fmadd(pv[m], b, acc[n][m]);
      }
    }
    SA_UNROLL for (int n = 0; n < N; ++n) SA_UNROLL for (int m = 0; m < MR; ++m)
      V::store(ot + n * BQ + m * W, V::add(V::load(ot + n * BQ + m * W), acc[n][m]));
  }
}

template <int N, int MR>
static inline void qk_dispatch(int n, const float* qt, const float* k0, int64_t ks, int64_t D, float* st, float* tmax,
                               const float* init) {
  if constexpr (N > 0) {
    if (n == N) return qk_tile<N, MR>(qt, k0, ks, D, st, tmax, init);
    qk_dispatch<N - 1, MR>(n, qt, k0, ks, D, st, tmax, init);
  }
}
template <int N, int MR>
static inline void pv_dispatch(int n, const float* pt, int64_t nk, const float* v0, int64_t vs, float* ot) {
  if constexpr (N > 0) {
    if (n == N) return pv_tile<N, MR>(pt, nk, v0, vs, ot);
    pv_dispatch<N - 1, MR>(n, pt, nk, v0, vs, ot);
  }
}

// true when the row holds a NaN or an infinity
static inline bool row_nonfinite(const float* r, int64_t n) {
  T acc = V::zero();
  const T z = V::zero();
  int64_t x = 0;
  for (; x + W <= n; x += W) acc = V::fmadd(V::load(r + x), z, acc);
  if (x < n) acc = V::fmadd(V::load_partial(r + x, (int)(n - x)), z, acc);
  float s = V::hsum(acc);
  return s != s;
}

template <int MR>
static inline void pv_all(const float* pt, int64_t nk, const float* v0, int64_t vs, int64_t Dv, float* ot) {
  if (nk <= 0) return;
  for (int64_t c0 = 0; c0 < Dv; c0 += kAttNR) {
    int n = (int)imin(kAttNR, Dv - c0);
    pv_dispatch<kAttNR, MR>(n, pt, nk, v0 + c0, vs, ot + c0 * BQ);
  }
}

#ifdef SA_HAVE_TRANSPOSE
// r[i] = the first `cols` floats of row i (src + i * stride) for i < rows, zero elsewhere: the
// W x W block that pack_qt and pack_b transpose through registers
static inline void load_block(const float* src, int64_t stride, int64_t rows, int cols, T* r) {
  SA_UNROLL for (int i = 0; i < W; ++i) {
    if (i < rows) r[i] = cols == W ? V::load(src + i * stride) : V::load_partial(src + i * stride, cols);
    else r[i] = V::zero();
  }
}
#endif

// qt[d][q] = src[q * ss + d] * s for q < nq (lanes nq.. are zero), d < D
static inline void pack_qt(const float* src, int64_t ss, int64_t nq, int64_t D, float s, float* qt) {
#ifdef SA_HAVE_TRANSPOSE
  const T sv = V::set1(s);
  for (int64_t q0 = 0; q0 < BQ; q0 += W) {
    const int64_t rows = iclamp(nq - q0, 0, W);
    for (int64_t d0 = 0; d0 < D; d0 += W) {
      const int dw = (int)imin(W, D - d0);
      T r[W];
      load_block(src + q0 * ss + d0, ss, rows, dw, r);
      V::transpose(r);
      SA_UNROLL for (int j = 0; j < W; ++j) if (j < dw) V::store(qt + (d0 + j) * BQ + q0, V::mul(r[j], sv));
    }
  }
#else
  for (int64_t d = 0; d < D; ++d) {
    float* row = qt + d * BQ;
    for (int64_t q = 0; q < nq; ++q) row[q] = src[q * ss + d] * s;
    for (int64_t q = nq; q < BQ; ++q) row[q] = 0.0f;
  }
#endif
}

// dst[q * ds + c] = ot[c][q] * inv[q] + 0 for q < nq, c < Dv. A row with l == 0 (every key it
// read has weight 0: an additive -Infinity) gets inv 0, so it is zero unless a value it read was
// NaN or infinite (0 * NaN), as in the reference; the + 0 turns the -0 of 0 * negative into +0.
static inline void write_out(const float* ot, const float* lo, int64_t nq, int64_t Dv, float* dst, int64_t ds, float* inv) {
  for (int64_t q = 0; q < nq; ++q) inv[q] = lo[q] == 0.0f ? 0.0f : 1.0f / lo[q];
#ifdef SA_HAVE_TRANSPOSE
  for (int64_t q0 = 0; q0 < nq; q0 += W) {
    const int64_t rows = imin(nq - q0, W);
    const T iv = V::load_partial(inv + q0, (int)rows);
    for (int64_t c0 = 0; c0 < Dv; c0 += W) {
      const int cw = (int)imin(W, Dv - c0);
      T r[W];
      SA_UNROLL for (int j = 0; j < W; ++j) r[j] = j < cw ? V::add(V::mul(V::load(ot + (c0 + j) * BQ + q0), iv), V::zero()) : V::zero();
      V::transpose(r);
      SA_UNROLL for (int i = 0; i < W; ++i) {
        if (i < rows) {
          if (cw == W) V::store(dst + (q0 + i) * ds + c0, r[i]);
          else V::store_partial(dst + (q0 + i) * ds + c0, r[i], cw);
        }
      }
    }
  }
#else
  for (int64_t q = 0; q < nq; ++q) {
    float* orow = dst + q * ds;
    for (int64_t c = 0; c < Dv; ++c) orow[c] = ot[c * BQ + q] * inv[q] + 0.0f;
  }
#endif
}

// every cache line of r[0..n) (RW 1: to be written) towards L1 (LOC 3) or L2 (LOC 2); the last
// float's too, since a row need not start on a line
template <int RW, int LOC = 3>
static inline void prefetch_span(const float* r, int64_t n) {
  for (int64_t x = 0; x < n; x += 16) __builtin_prefetch(r + x, RW, LOC);
  __builtin_prefetch(r + n - 1, RW, LOC);
}

// The query block flash task t covers: batch b, heads [h, h + gs), queries [i0, i0 + nq). Blocks
// of a head go last to first, so the heaviest (causal) blocks come first.
struct FlashBlock {
  int64_t b, h, i0, nq;
};
static inline FlashBlock flash_block(const AttnParams& p, int64_t nqb, int64_t gs, int64_t t) {
  const int64_t hg = p.heads / gs;
  const int64_t bh = t / nqb, i0 = (nqb - 1 - t % nqb) * BQ;
  return {bh / hg, (bh % hg) * gs, i0, imin(BQ, p.seq_q - i0)};
}

struct AttnPlan {
  bool direct;
  int64_t nqb;       // flash: query blocks per head
  bool stream_kv;    // flash: K and V come from memory (see flash_streams_kv)
  int64_t gs;        // flash: query heads per task (of one kv head; see flash_task)
  int64_t hs;        // flash: query heads stacked in one block's lanes (see flash_stacked_heads)
  int64_t bk;        // flash: keys per block
  int64_t group;     // Hq / Hkv
  int64_t chunk;     // direct: keys per chunk
  int64_t nchunks;   // direct: chunks (1 = no split)
  int64_t scratch_floats;
  float qscale;
};

// A few query blocks against a long K and V (a prompt's chunk or a few draft tokens against a KV
// cache): each head's K and V rows are read by few tasks, so they come from memory nearly every
// time and the flash loop waits on them (~3 GB/s). Such calls prefetch, during each Q·Kᵀ tile,
// the next key block's K rows and the current block's V rows towards L2. One thread, A/B pairs:
// (Hq/Hkv, Sq, Sk, D) = (32/32, 8, 4096, 128) 1.5-1.8x, (32/8, 16, 2048, 128) 1.2x, (32/32, 32,
// 2048, 128) 1.5x, (32/8, 48, 4096, 128) 1.3x, (12, 64, 2048, 64) 1.0-1.07x. Where K and V stay
// in cache (many query blocks, or short rows) the prefetches cost 4-10% (long2k, enc512, heads
// of 64-256 keys), so they are left out there.
static inline bool flash_streams_kv(const AttnParams& p, int64_t nqb) {
  return nqb <= 4 && p.seq_k * (p.head_dim + p.head_dim_v) * (int64_t)sizeof(float) >= ((int64_t)512 << 10);
}

// A grouped-query kv head's query heads with few rows each share a block's lanes (stacked): one
// head's 16 rows in a block of BQ = 64 lanes (AVX-512) made it compute 4x the multiply-adds its
// rows needed (a GQA prompt chunk against a long cache ran at 22% of the FMA peak). Only the shape
// decides, so results stay the same for any thread count.
static inline int64_t flash_stacked_heads(const AttnParams& p, const AttnPlan& pl) {
  if (p.weights || pl.group < 2 || p.seq_q * 2 > BQ) return 1;
  for (int64_t hs = imin(pl.group, BQ / p.seq_q); hs > 1; --hs)
    if (pl.group % hs == 0) return hs;
  return 1;
}

// Query heads per flash task: a kv head's whole group where that still leaves 4 tasks per
// worker (else the largest divisor of the group that does), at most SA_MAX_GROUP_TASK; one with
// weights (their tile is the whole row of one head). Which heads share a task changes no result.
#define SA_MAX_GROUP_TASK 8
static inline int64_t flash_heads_per_task(const AttnParams& p, const AttnPlan& pl, int workers) {
  if (p.weights) return 1;
  // whole stacks only (pl.hs heads share a block's lanes; 1 without stacking)
  for (int64_t gs = imin(pl.group, SA_MAX_GROUP_TASK); gs > pl.hs; --gs)
    if (pl.group % gs == 0 && gs % pl.hs == 0 && p.batch * (p.heads / gs) * pl.nqb >= 4 * (int64_t)workers) return gs;
  return pl.hs;
}

struct AttnCtx {
  const AttnParams* p;
  AttnPlan plan;
  Scratch* scratch;
  float* partials;
};

// x * log2(e) with a finite x kept finite: a mask value below -FLT_MAX / log2(e), such as
// torch.finfo(float32).min (which Hugging Face models use for hidden keys), would otherwise become
// -Infinity and hide its key outright, so that a row hidden by such values alone came out as
// zeros, not as the reference's softmax over those (equal) finite scores. Infinities and NaN
// pass through.
static inline float to_log2_units(float x) {
  const float v = x * kLog2e;
  if (v - v != 0.0f && x - x == 0.0f) return v > 0.0f ? __FLT_MAX__ : -__FLT_MAX__;
  return v;
}

static inline float mask_value(const AttnParams& p, int64_t b, int64_t h, int64_t i, int64_t j) {
  int64_t idx = b * p.m_sb + h * p.m_sh + i * p.m_sq + j * p.m_sk;
  if (p.mask_kind == kMaskAdditive) return to_log2_units(((const float*)p.mask)[idx]);
  return ((const uint8_t*)p.mask)[idx] ? 0.0f : kNegInf;
}

// One query block's running state in a flash task: head h's rows [i0, i0 + nq), or with heads
// stacked (sq > 0) lane q is row q % sq of head h + q / sq; packed Qᵀ, the output sums Oᵀ and the
// online softmax's max, sum and rescale factors (all in scratch).
struct FlashRows {
  int64_t h;
  int64_t sq;  // rows per stacked head; 0: one head's consecutive rows
  float *qt, *ot, *mo, *lo, *alpha, *inv, *tmax, *negm;
  bool ref_moderate;  // every lane's reference max is finite and below 2^40 in magnitude
};

static inline int64_t flash_rows_floats(int64_t D, int64_t Dv) { return (D + Dv + 6) * BQ; }

static inline FlashRows flash_rows(int64_t h, float* buf, int64_t D, int64_t Dv) {
  FlashRows r;
  r.h = h;
  r.sq = 0;
  r.qt = buf;
  r.ot = buf + D * BQ;
  float* ml = r.ot + Dv * BQ;  // m[BQ], l[BQ], alpha[BQ], inv[BQ], tmax[BQ], -m[BQ]
  r.mo = ml;
  r.lo = ml + BQ;
  r.alpha = ml + 2 * BQ;
  r.inv = ml + 3 * BQ;
  r.tmax = ml + 4 * BQ;
  r.negm = ml + 5 * BQ;
  r.ref_moderate = false;
  return r;
}

static inline int64_t lane_head(const FlashRows& r, int64_t q) { return r.sq ? r.h + q / r.sq : r.h; }
static inline int64_t lane_query(const FlashRows& r, int64_t i0, int64_t q) { return r.sq ? q % r.sq : i0 + q; }

// One lane group's column of a tile (c[j * BQ], j < nk) turned into P = exp2(c - mref) in place
// (without the subtraction when Sub is false: offset tiles already hold s - m); returns its sum,
// formed in pieces of kSumKeys (with weights the tile is the whole row).
template <bool Sub>
static inline T exp2_column(float* c, int64_t nk, T mref) {
  T sum = V::zero();
  for (int64_t j0 = 0; j0 < nk; j0 += kSumKeys) {
    const int64_t j1 = imin(nk, j0 + kSumKeys);
    T s0 = V::zero(), s1 = V::zero();
    int64_t j = j0;
    for (; j + 1 < j1; j += 2) {
      T t0 = V::load(c + j * BQ), t1 = V::load(c + (j + 1) * BQ);
      if (Sub) {
        t0 = V::sub(t0, mref);
        t1 = V::sub(t1, mref);
      }
      const T e0 = V::exp2(t0), e1 = V::exp2(t1);
      V::store(c + j * BQ, e0);
      V::store(c + (j + 1) * BQ, e1);
      s0 = V::add(s0, e0);
      s1 = V::add(s1, e1);
    }
    if (j < j1) {
      const T t0 = V::load(c + j * BQ);
      const T e0 = V::exp2(Sub ? V::sub(t0, mref) : t0);
      V::store(c + j * BQ, e0);
      s0 = V::add(s0, e0);
    }
    sum = V::add(sum, V::add(s0, s1));
  }
  return sum;
}

// Qᵀ of a block of stacked heads (lane q: row q % sq of head h + q / sq), scaled; padded lanes
// are zero. Scalar: a block of few rows per head packs a few thousand floats against its rows'
// millions of multiply-adds over a long cache.
static inline void pack_qt_stacked(const AttnParams& p, FlashRows& r, int64_t b, int64_t lanes, float s) {
  const int64_t D = p.head_dim;
  for (int64_t q = 0; q < BQ; ++q) {
    if (q >= lanes) {
      for (int64_t d = 0; d < D; ++d) r.qt[d * BQ + q] = 0.0f;
      continue;
    }
    const float* src = p.q + b * p.q_sb + lane_head(r, q) * p.q_sh + lane_query(r, 0, q) * p.q_ss;
    for (int64_t d = 0; d < D; ++d) r.qt[d * BQ + q] = src[d] * s;
  }
}

// write_out for a block of stacked heads (each lane to its head's row), or zeros where no key was
// visible (any = false); the same arithmetic as write_out
static inline void write_out_stacked(const AttnParams& p, FlashRows& r, int64_t b, int64_t lanes, bool any) {
  const int64_t Dv = p.head_dim_v;
  for (int64_t q = 0; q < lanes; ++q) {
    float* dst = p.out + b * p.o_sb + lane_head(r, q) * p.o_sh + lane_query(r, 0, q) * p.o_ss;
    const float inv = !any || r.lo[q] == 0.0f ? 0.0f : 1.0f / r.lo[q];
    for (int64_t c = 0; c < Dv; ++c) dst[c] = any ? r.ot[c * BQ + q] * inv + 0.0f : 0.0f;
  }
}

// One key block [kb, kb + nk) of one query block: S = Q·Kᵀ into the tile st, masks, the online
// softmax, O += P·V. prefetch_kv: the K rows of the next block and this block's V rows are
// prefetched during the Q·Kᵀ tiles (flash_streams_kv; done by a task's first query block only).
template <int MR>
static inline void flash_step(const AttnParams& p, const AttnPlan& pl, FlashRows& r, int64_t b, int64_t i0, int64_t nq,
                              int64_t kb, int64_t nk, int64_t kend, const float* kbase, const float* vbase, float* st,
                              bool prefetch_kv) {
  const int64_t D = p.head_dim, Dv = p.head_dim_v;
  const int64_t off = p.seq_k - p.seq_q;
  const T slack = V::set1(kRescaleSlack);
  // S = Q·Kᵀ into st (offset: S - m, the accumulators started at -m), then the causal and mask
  // limits; returns whether any were applied
  auto scores = [&](bool offset, bool prefetch) -> bool {
    for (int q = 0; q < BQ; ++q) r.tmax[q] = kNegInf;
    for (int64_t j = 0; j < nk;) {
      const int64_t rem = nk - j;
      int n = (int)imin(kAttNR, rem);
      // a short last tile runs at a fraction of the FMA rate: split e.g. 6 + 2 as 4 + 4
      if (kAttNR >= 4 && rem > kAttNR && rem < kAttNR + 3) n = (int)((rem + 1) / 2);
      if (prefetch)
        for (int jj = 0; jj < n; ++jj) {
          if (kb + pl.bk + j + jj < kend) prefetch_span<0, 2>(kbase + (kb + pl.bk + j + jj) * p.k_ss, D);
          prefetch_span<0, 2>(vbase + (kb + j + jj) * p.v_ss, Dv);
        }
      qk_dispatch<kAttNR, MR>(n, r.qt, kbase + (kb + j) * p.k_ss, p.k_ss, D, st + j * BQ, r.tmax, offset ? r.negm : nullptr);
      j += n;
    }
    bool limited = false;
    if (p.mask_kind != kMaskNone) {
      limited = true;
      for (int64_t j = 0; j < nk; ++j)
        for (int64_t q = 0; q < nq; ++q) {
          const float mv = mask_value(p, b, lane_head(r, q), lane_query(r, i0, q), kb + j);
          if (p.mask_kind == kMaskBoolean) {
            if (mv == kNegInf) st[j * BQ + q] = kNegInf;  // hidden, even where the score is NaN
          } else {
            st[j * BQ + q] += mv;
          }
        }
    }
    // causal: key kj hides lanes q < kj - off - i0 (only on tiles crossing the diagonal). After
    // the mask, since it replaces a hidden score outright: a NaN or +Infinity that an additive
    // mask holds at a key the causal rule hides cannot reach the row (-Infinity + NaN is NaN),
    // as the reference never reads the mask there
    if (p.causal && kb + nk - 1 > i0 + off && r.sq) {
      // stacked heads: each lane's query index restarts per head
      limited = true;
      for (int64_t j = 0; j < nk; ++j)
        for (int64_t q = 0; q < nq; ++q)
          if (kb + j > lane_query(r, i0, q) + off) st[j * BQ + q] = kNegInf;
    } else if (p.causal && kb + nk - 1 > i0 + off) {
      limited = true;
      for (int64_t j = 0; j < nk; ++j) {
        int64_t hid = kb + j - off - i0;
        if (hid <= 0) continue;
        SA_UNROLL for (int m = 0; m < MR; ++m) {
          int64_t cnt = iclamp(hid - m * W, 0, W);
          if (cnt > 0) V::store(st + j * BQ + m * W, V::hide_lanes_below(V::load(st + j * BQ + m * W), (int)cnt));
        }
      }
    }
    return limited;
  };
  // the block's max per lane group, from the tile (limited) or from the max the tiles kept
  auto block_max = [&](bool limited, int m) -> T {
    if (!limited) return V::load(r.tmax + m * W);
    T bm = V::set1(kNegInf);
    for (int64_t j = 0; j < nk; ++j) bm = V::max(bm, V::load(st + j * BQ + m * W));
    return bm;
  };
  // Offset mode (after the first block, once every reference is moderate): the Q·Kᵀ
  // accumulators start at -m, so the tile holds t = s - m directly and, while the block's max
  // stays within the slack, P = exp2(t) needs no subtraction and the reference stays put.
  bool offs = kb > 0 && r.ref_moderate;
  bool masked = scores(offs, prefetch_kv);
  if (offs) {
    // A block whose max passes the slack moves the reference, and its t = s - m were summed
    // onto a start of -m that may dwarf s (m from a block of scores far below these, such as
    // keys padded with a -1e4 or -1e9 mask: s then kept only the bits -m left it, and the
    // weights came out nearly uniform). Such a block is scored again as it is; it is rare, since
    // the first block sets the reference.
    bool moves = false;
    SA_UNROLL for (int m = 0; m < MR; ++m) moves |= !(V::hmax(block_max(masked, m)) <= kRescaleSlack);
    if (moves) {
      offs = false;
      masked = scores(false, false);
    }
  }
  // online softmax (all vertical: lanes are queries). The reference max only moves when the
  // block's max exceeds it by more than kRescaleSlack (base-2 units), so P <= 2^slack and
  // the rescale of O (alpha != 1) is skipped in most blocks; the first block sets it exactly.
  bool rescale = false, moved = false;
  SA_UNROLL for (int m = 0; m < MR; ++m) {
    if (offs) {
      // every lane group's max stayed within the slack (checked above): the reference is
      // unchanged (alpha = 1), P = exp2(t); a NaN score gives a NaN row either way
      const T sum = exp2_column<false>(st + m * W, nk, V::zero());
      V::store(r.lo + m * W, V::add(V::load(r.lo + m * W), sum));
      V::store(r.alpha + m * W, V::set1(1.0f));
      continue;
    }
    // (an offset tile never gets here: one that moves the reference was scored again above)
    const T bm = block_max(masked, m);
    const T mold = V::load(r.mo + m * W);
    const T mx = kb == 0 ? bm : V::max(mold, V::sub(bm, slack));
    const T mref = V::ninf_to_zero(mx);  // P = exp2(tile - mref)
    T al = V::exp2(V::sub(mold, mref));
    const T sum = exp2_column<true>(st + m * W, nk, mref);
    V::store(r.lo + m * W, V::fmadd(V::load(r.lo + m * W), al, sum));
    V::store(r.alpha + m * W, al);
    V::store(r.mo + m * W, mx);
    moved = true;
    // alpha is in [0, 1] (or NaN): the sum of 1 - alpha is 0 exactly when every lane is 1
    if (kb > 0 && !(V::hsum(V::sub(V::set1(1.0f), al)) == 0.0f)) rescale = true;
  }
  if (moved) {  // the references changed: refresh -m and whether every lane's is moderate
    T acc = V::zero(), big = V::zero();
    SA_UNROLL for (int m = 0; m < MR; ++m) {
      const T mv = V::load(r.mo + m * W);
      const T neg = V::sub(V::zero(), mv);
      V::store(r.negm + m * W, neg);
      acc = V::fmadd(mv, V::zero(), acc);  // NaN when some lane is infinite or NaN
      big = V::max(big, V::max(mv, neg));
    }
    const float chk = V::hsum(acc);
    r.ref_moderate = chk == chk && V::hmax(big) < 1099511627776.0f;  // 2^40
  }
  if (rescale) {  // O *= alpha (multiplying by 1 changes nothing, so only when some lane moved)
    for (int64_t x = 0; x < Dv; ++x)
      SA_UNROLL for (int m = 0; m < MR; ++m) V::store(r.ot + x * BQ + m * W, V::mul(V::load(r.ot + x * BQ + m * W), V::load(r.alpha + m * W)));
  }
  // O += P·V. A hidden key's value is never read (the reference's rule; it matters when
  // that value is NaN or infinite, since 0 * NaN = NaN): in tiles where some keys are hidden
  // from some queries, keys whose value row is not finite are taken out of the micro-kernel
  // and added only to the queries that see them.
  const bool tile_masked = (p.causal && kb + nk - 1 > i0 + off) || p.mask_kind == kMaskBoolean;
  int64_t seg = 0;
  if (tile_masked) {
    for (int64_t j = 0; j < nk; ++j) {
      const float* vr = vbase + (kb + j) * p.v_ss;
      if (!row_nonfinite(vr, Dv)) continue;
      pv_all<MR>(st + seg * BQ, j - seg, vbase + (kb + seg) * p.v_ss, p.v_ss, Dv, r.ot);
      for (int64_t q = 0; q < nq; ++q) {
        const int64_t kj = kb + j, i = lane_query(r, i0, q);
        if (p.causal && kj > i + off) continue;
        if (p.mask_kind == kMaskBoolean && mask_value(p, b, lane_head(r, q), i, kj) == kNegInf) continue;
        const float pj = st[j * BQ + q];
        for (int64_t x = 0; x < Dv; ++x) r.ot[x * BQ + q] += pj * vr[x];
      }
      seg = j + 1;
    }
  }
  pv_all<MR>(st + seg * BQ, nk - seg, vbase + (kb + seg) * p.v_ss, p.v_ss, Dv, r.ot);
}

// flash_step over the vectors of lanes that hold rows (mr of kAttMR): a block with fewer rows than
// BQ (a short sequence's only block, a longer one's last) skips the others. A 64-lane AVX-512
// block holding 16 rows of each of 32 heads (no grouping to stack) did 4x the multiply-adds its
// rows needed. Which vectors run depends on the shape only, so results stay the same for any
// thread count; the block-wide choices (offset mode, rescale) no longer look at idle lanes.
template <int MR>
static inline void flash_step_rows(int mr, const AttnParams& p, const AttnPlan& pl, FlashRows& r, int64_t b, int64_t i0,
                                   int64_t nq, int64_t kb, int64_t nk, int64_t kend, const float* kbase, const float* vbase,
                                   float* st, bool prefetch_kv) {
  if constexpr (MR > 1) {
    if (mr < MR) return flash_step_rows<MR - 1>(mr, p, pl, r, b, i0, nq, kb, nk, kend, kbase, vbase, st, prefetch_kv);
  }
  flash_step<MR>(p, pl, r, b, i0, nq, kb, nk, kend, kbase, vbase, st, prefetch_kv);
}

// Task: batch b, the pl.gs query heads h0.. (of one kv head: they read the same K and V) and
// queries [i0, i0 + nq). Each key block of K and V is read once for all of the task's heads, so a
// grouped-query model's few query rows against a long cache read K and V once per kv head, not
// once per query head. The heads' rows are computed exactly as they would be one head per task.
static void flash_task(void* vctx, int64_t t, int worker) {
  AttnCtx& c = *(AttnCtx*)vctx;
  const AttnParams& p = *c.p;
  const AttnPlan& pl = c.plan;
  const int64_t nqb = pl.nqb, gs = pl.gs;
  const FlashBlock blk = flash_block(p, nqb, gs, t);
  const int64_t b = blk.b, h0 = blk.h, i0 = blk.i0, nq = blk.nq;
  const int64_t kvh = h0 / pl.group;
  const int64_t D = p.head_dim, Dv = p.head_dim_v, Sq = p.seq_q, Sk = p.seq_k;
  const int64_t off = Sk - Sq;

  int64_t kend = Sk;
  if (p.key_lengths) kend = iclamp(p.key_lengths[b], 0, Sk);
  if (p.causal) kend = imin(kend, i0 + nq - 1 + off + 1);
  if (kend < 0) kend = 0;

  float* buf = c.scratch->bufs[worker];
  float* st = buf + gs * flash_rows_floats(D, Dv);  // the S / P tile, shared by the task's blocks in turn
  // one block per head, or per pl.hs heads stacked in its lanes
  const int64_t hs = pl.hs, nblk = gs / hs, lanes = hs * nq;
  const int mr = (int)((lanes + W - 1) / W);  // vectors of lanes that hold rows
  FlashRows rows[SA_MAX_GROUP_TASK];
  for (int64_t g = 0; g < nblk; ++g) {
    rows[g] = flash_rows(h0 + g * hs, buf + g * flash_rows_floats(D, Dv), D, Dv);
    if (hs > 1) rows[g].sq = nq;
  }

  const float* kbase = p.k + b * p.k_sb + kvh * p.k_sh;
  const float* vbase = p.v + b * p.v_sb + kvh * p.v_sh;

  // The next task's query rows (the task counter usually hands this worker t + 1) and this
  // task's output rows are fetched while this block computes: with few key blocks per task the
  // packing of Qᵀ waited on cache misses (~10% of a 256 x 256 head here) and the write-back on
  // its stores. Paired runs (AVX2): 256 x 256 heads +4-5%, enc128 +4-16%, long2k ±0.
  if (t + 1 < p.batch * (p.heads / gs) * nqb) {
    const FlashBlock nx = flash_block(p, nqb, gs, t + 1);
    for (int64_t g = 0; g < gs; ++g) {
      const float* qn = p.q + nx.b * p.q_sb + (nx.h + g) * p.q_sh + nx.i0 * p.q_ss;
      for (int64_t q = 0; q < nx.nq; ++q) prefetch_span<0>(qn + q * p.q_ss, D);
    }
  }
  for (int64_t g = 0; g < gs; ++g) {
    float* obase = p.out + b * p.o_sb + (h0 + g) * p.o_sh;
    for (int64_t q = 0; q < nq; ++q) prefetch_span<1>(obase + (i0 + q) * p.o_ss, Dv);
  }
  if (kend > 0) {
    for (int64_t g = 0; g < nblk; ++g) {
      FlashRows& r = rows[g];
      // pack Qᵀ (scaled into base-2 units); padded lanes are zero
      if (r.sq) {
        pack_qt_stacked(p, r, b, lanes, pl.qscale);
      } else {
        pack_qt(p.q + b * p.q_sb + r.h * p.q_sh + i0 * p.q_ss, p.q_ss, nq, D, pl.qscale, r.qt);
      }
      for (int64_t x = 0; x < Dv * BQ; ++x) r.ot[x] = 0.0f;
      for (int q = 0; q < BQ; ++q) { r.mo[q] = kNegInf; r.lo[q] = 0.0f; }
    }
    for (int64_t kb = 0; kb < kend; kb += pl.bk) {
      const int64_t nk = imin(pl.bk, kend - kb);
      for (int64_t g = 0; g < nblk; ++g)
        flash_step_rows<kAttMR>(mr, p, pl, rows[g], b, i0, lanes, kb, nk, kend, kbase, vbase, st, pl.stream_kv && g == 0);
    }
  }
  // normalise and write out (a row with no visible key gives zeros)
  for (int64_t g = 0; g < nblk; ++g) {
    FlashRows& r = rows[g];
    if (r.sq) {
      write_out_stacked(p, r, b, lanes, kend > 0);
      continue;
    }
    float* obase = p.out + b * p.o_sb + r.h * p.o_sh;
    if (kend > 0) {
      write_out(r.ot, r.lo, nq, Dv, obase + i0 * p.o_ss, p.o_ss, r.inv);
    } else {
      for (int64_t q = 0; q < nq; ++q)
        for (int64_t c0 = 0; c0 < Dv; ++c0) obase[(i0 + q) * p.o_ss + c0] = 0.0f;
    }
  }
  // with weights the key block is the whole row, so st holds every P of this (single) head
  if (p.weights) {
    const FlashRows& r = rows[0];
    float* wbase = p.weights + ((b * p.heads + r.h) * Sq) * Sk;
    for (int64_t q = 0; q < nq; ++q) {
      float l = kend > 0 ? r.lo[q] : 0.0f;
      float* wrow = wbase + (i0 + q) * Sk;
      if (l != l) {  // a NaN row is NaN everywhere, as the reference's softmax makes it
        for (int64_t j = 0; j < Sk; ++j) wrow[j] = l;
        continue;
      }
      const float iv = (l == 0.0f) ? 0.0f : 1.0f / l;
      for (int64_t j = 0; j < kend; ++j) wrow[j] = l == 0.0f ? 0.0f : st[j * BQ + q] * iv;
      for (int64_t j = kend; j < Sk; ++j) wrow[j] = 0.0f;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Attention: direct path (few queries: decoding). Task = (batch, kv head, key chunk); rows are
// every (query head of the group, query). K and V are read once from memory per task.
// ---------------------------------------------------------------------------------------------

#ifndef SA_DEC_PF
#define SA_DEC_PF 8192
#endif
#ifndef SA_DEC_PFL
#define SA_DEC_PFL 2
#endif
// Decoding streams K and V from memory once, one row after another; the hardware prefetcher
// stops at each 4 KiB page and restarts behind the loads, so the rows SA_DEC_PF bytes ahead are
// prefetched by hand towards L2 (every line of them), which keeps more lines in flight. Paired
// runs of decode4k (keys, then values; AVX-512 host): +11% on one thread, +16% on two (8 KiB
// ahead; 1-4 KiB gained less, 16 KiB the same; into L1 +4%, non-temporal prefetches halved the
// speed). With K and V side by side (AVX2 host): +16% on decode4k, +8% on Hq 32 / Hkv 8; 16 KiB
// ahead the same as 8.
// Prefetches never fault, so running past the end of the tensor is harmless. On CPUs where
// dispatch.cc finds non-temporal prefetches faster, those are used instead.
static const bool kDecPrefetchNta = decode_prefetch_nta();
static inline void prefetch_row(const float* r, int64_t n) {
  // integer arithmetic: the address may lie past the end of the tensor (no pointer is formed there)
  const uintptr_t c = (uintptr_t)r + SA_DEC_PF;
  const int64_t bytes = n * (int64_t)sizeof(float);
  if (kDecPrefetchNta) {
    for (int64_t x = 0; x < bytes; x += 64) __builtin_prefetch((const void*)(c + (uintptr_t)x), 0, 0);
  } else {
    for (int64_t x = 0; x < bytes; x += 64) __builtin_prefetch((const void*)(c + (uintptr_t)x), 0, SA_DEC_PFL);
  }
}

static void exp2_sum_inplace(float* s, int64_t n, float mref, float* sum_out) {
  T mr = V::set1(mref);
  T acc = V::zero();
  int64_t j = 0;
  for (; j + W <= n; j += W) {
    T e = V::exp2(V::sub(V::load(s + j), mr));
    V::store(s + j, e);
    acc = V::add(acc, e);
  }
  if (j < n) {
    int r = (int)(n - j);
    T e = V::exp2(V::sub(V::load_partial(s + j, r), mr));
    V::store_partial(s + j, e, r);
    acc = V::add(acc, V::load_partial(s + j, r));
  }
  *sum_out = V::hsum(acc);
}

// Decoding is bound by how many cache lines the core keeps in flight, not by arithmetic. A task
// streams its chunk's keys and values side by side, one key row and one value row in turn: each
// step reads a K row of block b and the V row of block b - 1 (whose weights the block's online
// softmax has just made), so no pass reads K or V twice and two sequential streams stay open.
// Against the previous order (the chunk's scores, then its values in column passes of 4 vectors),
// paired runs here: decode4k +22%, Hq 32 / Hkv 8 +42% (one thread). Two or four chunks per task
// streamed side by side (4 or 8 streams) lost 10-25% to one; 256- or 1024-key chunks and 16- or
// 64-key blocks measured the same as 512 and 32.
// Each chunk's online softmax state (max, sum, P·V sums) is combined with the others in chunk
// order afterwards (combine_task), so results stay the same for any thread count.
constexpr int DEC_RB = 4;  // query rows (of one kv head) per pass over the keys
#ifndef SA_DEC_BLK
#define SA_DEC_BLK 32
#endif
constexpr int DEC_BLK = SA_DEC_BLK;  // keys per online-softmax block

constexpr int pow2_floor(int x) {
  int p = 1;
  while (p * 2 <= x) p *= 2;
  return p;
}
// keys per score group for rb rows: the rb x kb dot products fill whole vectors of sums
constexpr int dec_kb(int rb) { return W / rb >= 1 ? pow2_floor(W / rb) : 1; }

// One query row's online softmax over one chunk: the max m (base 2, -inf before any key), the
// sum l and the weighted values o, all relative to mref(m); the current and the previous block's
// scores / weights s and hidden flags (a hidden key's value is never read by that row).
struct DecState {
  const float* q;  // the query row times scale·log2(e): qs, in scratch
  float* qs;
  float* o;   // the weighted values of the pieces before the current one
  float* ob;  // of the current piece of kSumKeys keys (summed from zero: see dec_flush)
  float* s[2];
  uint8_t* hid[2];
  bool anyhid[2];
  int64_t h, i, n;  // query head, query index, keys of the chunk it sees (a prefix)
  float m, l, lb;   // lb: the weights' sum of the current piece, as ob
};

// One chunk of a task: its index, its first key, the keys any row sees, and its rows' states.
struct DecChunk {
  int64_t index, lo, nmax;
  DecState* rows;
};

// Scores of RB rows against the chunk's keys [jb, jb + kn) (kn <= KB), the dot products reduced
// together by V::hsums (one horizontal sum per dot product cost more than the product itself).
// `between(k)` runs after each key row, so the caller can read a value row in turn.
template <int RB, class F>
static inline void dec_scores(DecChunk& ch, int slot, int64_t jb, int kn, const float* krow, const AttnParams& p, int64_t b,
                              float* const* wrow, F between) {
  constexpr int KB = dec_kb(RB);
  constexpr int NACC = (RB * KB + W - 1) / W * W;
  const int64_t D = p.head_dim;
  T acc[NACC];
  SA_UNROLL for (int a = 0; a < NACC; ++a) acc[a] = V::zero();
  if (RB == 1 && kn == KB) {
    // A whole group of one row: the depth loop outermost, so that the RB x KB dot products run
    // as independent chains side by side, each summed in the same order as below (the same
    // bits), rather than one chain of D / W dependent FMAs per key and row at a time. The
    // group's value rows follow its key rows.
    const float* kr[KB];
    SA_UNROLL for (int k = 0; k < KB; ++k) {
      kr[k] = krow + k * p.k_ss;
      if (SA_DEC_PF > 0) prefetch_row(kr[k], D);
    }
    int64_t d = 0;
    for (; d + W <= D; d += W) {
      T qv[RB];
      SA_UNROLL for (int r = 0; r < RB; ++r) qv[r] = V::load(ch.rows[r].q + d);
      SA_UNROLL for (int k = 0; k < KB; ++k) {
        const T kv = V::load(kr[k] + d);
        SA_UNROLL for (int r = 0; r < RB; ++r) acc[r * KB + k] = V::fmadd(qv[r], kv, acc[r * KB + k]);
      }
    }
    if (d < D) {
      const int dn = (int)(D - d);
      T qv[RB];
      SA_UNROLL for (int r = 0; r < RB; ++r) qv[r] = V::load_partial(ch.rows[r].q + d, dn);
      SA_UNROLL for (int k = 0; k < KB; ++k) {
        const T kv = V::load_partial(kr[k] + d, dn);
        SA_UNROLL for (int r = 0; r < RB; ++r) acc[r * KB + k] = V::fmadd(qv[r], kv, acc[r * KB + k]);
      }
    }
    SA_UNROLL for (int k = 0; k < KB; ++k) between(k);
  } else SA_UNROLL for (int k = 0; k < KB; ++k) {
    if (k < kn) {
      const float* kr = krow + k * p.k_ss;
      if (SA_DEC_PF > 0) prefetch_row(kr, D);
      int64_t d = 0;
      for (; d + W <= D; d += W) {
        const T kv = V::load(kr + d);
        SA_UNROLL for (int r = 0; r < RB; ++r) acc[r * KB + k] = V::fmadd(V::load(ch.rows[r].q + d), kv, acc[r * KB + k]);
      }
      if (d < D) {
        const int dn = (int)(D - d);
        const T kv = V::load_partial(kr + d, dn);
        SA_UNROLL for (int r = 0; r < RB; ++r) acc[r * KB + k] = V::fmadd(V::load_partial(ch.rows[r].q + d, dn), kv, acc[r * KB + k]);
      }
      between(k);
    }
  }
  float sc[NACC];
  SA_UNROLL for (int a = 0; a < NACC; a += W) V::store(sc + a, V::hsums(acc + a));
  const int64_t base = jb - (jb % DEC_BLK);  // the block's first key, chunk-relative
  for (int r = 0; r < RB; ++r) {
    DecState& R = ch.rows[r];
    for (int k = 0; k < kn; ++k) {
      const int64_t j = jb + k, jj = j - base, key = ch.lo + j;
      float sv = kNegInf;
      bool hid = j >= R.n;
      if (!hid) {
        sv = sc[r * KB + k];
        if (p.mask_kind == kMaskAdditive) sv += mask_value(p, b, R.h, R.i, key);
        if (p.mask_kind == kMaskBoolean && mask_value(p, b, R.h, R.i, key) == kNegInf) {
          hid = true;
          sv = kNegInf;  // hidden, even where the score is NaN
        }
        if (wrow) wrow[r][key] = sv;
      }
      R.s[slot][jj] = sv;
      R.hid[slot][jj] = hid;
      R.anyhid[slot] |= hid;
    }
  }
}

// o_r += p_r[jj] * v for the RB rows that see key jj of the block in `slot`
template <int RB>
static inline void dec_pv_key(DecState* rows, int slot, int64_t jj, const float* vr, int64_t Dv) {
  float pw[RB];
  bool use[RB];
  bool any = false;
  SA_UNROLL for (int r = 0; r < RB; ++r) {
    use[r] = !(rows[r].anyhid[slot] && rows[r].hid[slot][jj]);
    pw[r] = rows[r].s[slot][jj];
    any |= use[r];
  }
  if (!any) return;
  if (SA_DEC_PF > 0) prefetch_row(vr, Dv);
  int64_t c = 0;
  for (; c + W <= Dv; c += W) {
    const T v = V::load(vr + c);
    SA_UNROLL for (int r = 0; r < RB; ++r)
      if (use[r]) V::store(rows[r].ob + c, V::fmadd(V::set1(pw[r]), v, V::load(rows[r].ob + c)));
  }
  if (c < Dv) {
    const int cn = (int)(Dv - c);
    const T v = V::load_partial(vr + c, cn);
    SA_UNROLL for (int r = 0; r < RB; ++r)
      if (use[r]) V::store_partial(rows[r].ob + c, V::fmadd(V::set1(pw[r]), v, V::load_partial(rows[r].ob + c, cn)), cn);
  }
}

// The block's scores become weights: the max moves (O and l rescaled by alpha = 2^(m_old - m_new),
// skipped when it did not move), P = 2^(s - mref) in place, l += sum P. A NaN score makes the
// max NaN, and with it every weight and the row's output.
static void dec_softmax_block(DecState& R, int slot, int64_t nb, int64_t Dv) {
  float bm = kNegInf;
  bool nan = R.m != R.m;
  const float* s = R.s[slot];
  for (int64_t j = 0; j < nb; ++j) {
    if (s[j] != s[j]) nan = true;
    else if (s[j] > bm) bm = s[j];
  }
  const float mx = nan ? __builtin_nanf("") : (bm > R.m ? bm : R.m);
  const float mref = mx == kNegInf ? 0.0f : mx;
  float sum = 0.0f;
  exp2_sum_inplace(R.s[slot], nb, mref, &sum);
  if (mx == R.m) {
    R.lb += sum;
    return;
  }
  const float alpha = exp2f(R.m - mref);  // 0 for the first finite max: O and l held only zeros (or NaN)
  R.l *= alpha;
  R.lb = R.lb * alpha + sum;
  const T av = V::set1(alpha);
  float* const sums[2] = {R.o, R.ob};
  for (float* o : sums) {
    int64_t c = 0;
    for (; c + W <= Dv; c += W) V::store(o + c, V::mul(V::load(o + c), av));
    if (c < Dv) V::store_partial(o + c, V::mul(V::load_partial(o + c, (int)(Dv - c)), av), (int)(Dv - c));
  }
  R.m = mx;
}

// The current piece's sums added to the row's and started again from zero: summed into one
// running total, every weighted value of a long row was rounded at the size of the whole sum (a
// decoding row of 131k keys without the key split, as with weights: 1.7e-5 relative).
static void dec_flush(DecState& R, int64_t Dv) {
  R.l += R.lb;
  R.lb = 0.0f;
  int64_t c = 0;
  for (; c + W <= Dv; c += W) {
    V::store(R.o + c, V::add(V::load(R.o + c), V::load(R.ob + c)));
    V::store(R.ob + c, V::zero());
  }
  if (c < Dv) {
    const int cn = (int)(Dv - c);
    V::store_partial(R.o + c, V::add(V::load_partial(R.o + c, cn), V::load_partial(R.ob + c, cn)), cn);
    V::store_partial(R.ob + c, V::zero(), cn);
  }
}

// Streams the chunk's keys and values side by side for RB rows (see above).
template <int RB>
static void dec_rows(DecChunk& ch, const AttnParams& p, int64_t b, const float* kbase, const float* vbase, float* const* wrow) {
  constexpr int KB = dec_kb(RB);
  const int64_t Dv = p.head_dim_v;
  const int64_t nblk = (ch.nmax + DEC_BLK - 1) / DEC_BLK;
  // step bi: the scores of block bi and the values of block bi - 1, key row and value row in turn
  for (int64_t bi = 0; bi <= nblk; ++bi) {
    const int cur = (int)(bi & 1), prv = cur ^ 1;
    const int64_t pend = imin(bi * DEC_BLK, ch.nmax);  // block bi - 1's values end here
    for (int r = 0; r < RB; ++r) ch.rows[r].anyhid[cur] = false;
    for (int g = 0; g < DEC_BLK; g += KB) {
      const int64_t jb = bi * DEC_BLK + g;  // chunk-relative key of the scores
      const int64_t pb = jb - DEC_BLK;      // of the values
      auto between = [&](int k) {
        if (bi > 0 && pb + k < pend) dec_pv_key<RB>(ch.rows, prv, g + k, vbase + (ch.lo + pb + k) * p.v_ss, Dv);
      };
      const int kn = jb < ch.nmax ? (int)imin(KB, ch.nmax - jb) : 0;
      if (kn > 0) dec_scores<RB>(ch, cur, jb, kn, kbase + (ch.lo + jb) * p.k_ss, p, b, wrow, between);
      for (int k = kn; k < KB; ++k) between(k);
    }
    if (bi < nblk) {
      const int64_t nb = imin(DEC_BLK, ch.nmax - bi * DEC_BLK);
      for (int r = 0; r < RB; ++r) dec_softmax_block(ch.rows[r], cur, nb, Dv);
    }
    // pieces of kSumKeys keys: block bi - 1's values and block bi's weights are in
    if (bi == nblk || (bi + 1) % (kSumKeys / DEC_BLK) == 0)
      for (int r = 0; r < RB; ++r) dec_flush(ch.rows[r], Dv);
  }
}

template <int RB>
static inline void dec_rows_dispatch(int rb, DecChunk& ch, const AttnParams& p, int64_t b, const float* kbase, const float* vbase,
                                     float* const* wrow) {
  if constexpr (RB > 0) {
    if (rb == RB) return dec_rows<RB>(ch, p, b, kbase, vbase, wrow);
    dec_rows_dispatch<RB - 1>(rb, ch, p, b, kbase, vbase, wrow);
  }
}

// scratch floats per worker for the direct path: per row, O and the current piece of O (each Dv
// rounded up to W), two blocks of scores and of hidden flags, and the scaled query row (D rounded
// up to W)
static inline int64_t direct_state_floats(int64_t D, int64_t Dv) {
  return 2 * ((Dv + W - 1) / W * W) + 2 * DEC_BLK + 2 * DEC_BLK / 4 + (D + W - 1) / W * W;
}
static inline int64_t direct_scratch_floats(int64_t D, int64_t Dv) { return DEC_RB * direct_state_floats(D, Dv); }

static void direct_task(void* vctx, int64_t t, int worker) {
  AttnCtx& c = *(AttnCtx*)vctx;
  const AttnParams& p = *c.p;
  const AttnPlan& pl = c.plan;
  const int64_t bkv = t / pl.nchunks;
  const int64_t b = bkv / p.kv_heads, kvh = bkv % p.kv_heads;
  const int64_t Dv = p.head_dim_v, Sq = p.seq_q, Sk = p.seq_k;
  const int64_t off = Sk - Sq;
  const float* kbase = p.k + b * p.k_sb + kvh * p.k_sh;
  const float* vbase = p.v + b * p.v_sb + kvh * p.v_sh;
  int64_t kl = Sk;
  if (p.key_lengths) kl = iclamp(p.key_lengths[b], 0, Sk);

  DecState rows[DEC_RB];
  DecChunk ch;
  ch.index = t % pl.nchunks;
  ch.lo = ch.index * pl.chunk;
  ch.rows = rows;
  const int64_t hi = imin(ch.lo + pl.chunk, Sk);
  {
    float* buf = c.scratch->bufs[worker];
    const int64_t ob = (Dv + W - 1) / W * W;
    for (int r = 0; r < DEC_RB; ++r) {
      DecState& S = rows[r];
      S.o = buf;
      S.ob = buf + ob;
      S.s[0] = buf + 2 * ob;
      S.s[1] = S.s[0] + DEC_BLK;
      S.hid[0] = (uint8_t*)(S.s[1] + DEC_BLK);
      S.hid[1] = S.hid[0] + DEC_BLK;
      S.qs = (float*)(S.hid[1] + DEC_BLK);
      buf += direct_state_floats(p.head_dim, Dv);
    }
  }

  const int64_t nrows = pl.group * Sq;
  for (int64_t r0 = 0; r0 < nrows; r0 += DEC_RB) {
    const int rb = (int)imin(DEC_RB, nrows - r0);
    float* wrow[DEC_RB] = {};
    ch.nmax = 0;
    for (int r = 0; r < rb; ++r) {
      DecState& R = rows[r];
      R.h = kvh * pl.group + (r0 + r) / Sq;
      R.i = (r0 + r) % Sq;
      int64_t lim = kl;
      if (p.causal) lim = imin(lim, R.i + off + 1);
      R.n = imax(ch.lo, imin(hi, lim)) - ch.lo;
      // Q times scale·log2(e) before the dot products, as the flash path packs it: scaling the
      // sums after would overflow where q·k passes float32's range but scale·q·k does not
      const float* qrow = p.q + b * p.q_sb + R.h * p.q_sh + R.i * p.q_ss;
      for (int64_t d = 0; d < p.head_dim; ++d) R.qs[d] = qrow[d] * pl.qscale;
      R.q = R.qs;
      R.m = kNegInf;
      R.l = R.lb = 0.0f;
      for (int64_t y = 0; y < Dv; ++y) R.o[y] = R.ob[y] = 0.0f;
      ch.nmax = imax(ch.nmax, R.n);
      if (p.weights) wrow[r] = p.weights + ((b * p.heads + R.h) * Sq + R.i) * Sk;
    }
    dec_rows_dispatch<DEC_RB>(rb, ch, p, b, kbase, vbase, p.weights ? wrow : nullptr);

    for (int r = 0; r < rb; ++r) {
      const DecState& R = rows[r];
      const float l = R.l;
      const int64_t row = (b * p.heads + R.h) * Sq + R.i;
      if (pl.nchunks > 1) {
        float* part = c.partials + (row * pl.nchunks + ch.index) * (2 + Dv);
        part[0] = R.m;
        part[1] = l;
        for (int64_t y = 0; y < Dv; ++y) part[2 + y] = R.o[y];
        continue;
      }
      float* orow = p.out + b * p.o_sb + R.h * p.o_sh + R.i * p.o_ss;
      // l == 0: every key read had weight 0, and a NaN value among them still gives NaN
      const float inv = l == 0.0f ? 0.0f : 1.0f / l;
      for (int64_t y = 0; y < Dv; ++y) orow[y] = R.o[y] * inv + 0.0f;
      if (wrow[r]) {
        // the row holds the scores (base 2); its weights use the final max
        float* w = wrow[r];
        if (l != l) {
          for (int64_t j = 0; j < Sk; ++j) w[j] = l;
        } else {
          const float mref = R.m == kNegInf ? 0.0f : R.m;
          float unused;
          if (R.n > 0) exp2_sum_inplace(w, R.n, mref, &unused);
          for (int64_t j = 0; j < R.n; ++j) w[j] = l == 0.0f ? 0.0f : w[j] * inv;
          for (int64_t j = R.n; j < Sk; ++j) w[j] = 0.0f;
        }
      }
    }
  }
}

static void combine_task(void* vctx, int64_t row, int) {
  AttnCtx& c = *(AttnCtx*)vctx;
  const AttnParams& p = *c.p;
  const int64_t Dv = p.head_dim_v, Sq = p.seq_q;
  const int64_t nch = c.plan.nchunks;
  const int64_t b = row / (p.heads * Sq), h = (row / Sq) % p.heads, i = row % Sq;
  const float* part = c.partials + row * nch * (2 + Dv);
  float mx = kNegInf;
  bool nan = false;
  for (int64_t k = 0; k < nch; ++k) {
    float m = part[k * (2 + Dv)];
    if (m != m) nan = true;
    if (m > mx) mx = m;
  }
  float* orow = p.out + b * p.o_sb + h * p.o_sh + i * p.o_ss;
  // A chunk whose max is -Infinity read no key or only keys of weight 0: its sum is 0 and its
  // weighted values are 0 unless one of them was NaN, which must reach the output (0 * NaN), so
  // it is combined with the factor 0 rather than skipped (every chunk, when no key has weight).
  const bool none = !nan && mx == kNegInf;
  float l = 0.0f;
  for (int64_t x = 0; x < Dv; ++x) orow[x] = 0.0f;
  for (int64_t k = 0; k < nch; ++k) {
    const float* pk = part + k * (2 + Dv);
    const float e = nan ? __builtin_nanf("") : (none || pk[0] == kNegInf ? 0.0f : exp2f(pk[0] - mx));
    l += pk[1] * e;
    for (int64_t x = 0; x < Dv; ++x) orow[x] += pk[2 + x] * e;
  }
  const float inv = l == 0.0f ? 0.0f : 1.0f / l;
  for (int64_t x = 0; x < Dv; ++x) orow[x] = orow[x] * inv + 0.0f;
}

static int attention_impl(const AttnParams& p, Parallel& par) {
  if (p.batch <= 0 || p.heads <= 0 || p.seq_q <= 0 || p.kv_heads <= 0 || p.heads % p.kv_heads) return p.batch <= 0 || p.heads <= 0 || p.seq_q <= 0 ? kOk : kErrArgs;
  AttnCtx c;
  c.p = &p;
  c.partials = nullptr;
  AttnPlan& pl = c.plan;
  pl.group = p.heads / p.kv_heads;
  pl.qscale = p.scale * kLog2e;
  pl.direct = p.seq_q < DIRECT_MAX_SQ;
  Scratch scratch;
  c.scratch = &scratch;
  const int workers = par.workers();
  if (pl.direct) {
    const int64_t tasks = p.batch * p.kv_heads;
    if (!p.weights && p.seq_k >= SPLIT_MIN_SK && tasks < SPLIT_MAX_TASKS) pl.chunk = SPLIT_CHUNK;
    else pl.chunk = imax(p.seq_k, 1);
    pl.nchunks = (imax(p.seq_k, 1) + pl.chunk - 1) / pl.chunk;
    pl.scratch_floats = direct_scratch_floats(p.head_dim, p.head_dim_v);
    if (!scratch.alloc(workers, pl.scratch_floats)) return kErrAlloc;
    if (pl.nchunks > 1) {
      // each factor may be large where strides of 0 let small arrays stand for big shapes
      c.partials = falloc(count_mul(count_mul(p.batch, p.heads, p.seq_q), pl.nchunks, 2 + p.head_dim_v));
      if (!c.partials) return kErrAlloc;
    }
    par.run(tasks * pl.nchunks, direct_task, &c);
    if (pl.nchunks > 1) {
      par.run(p.batch * p.heads * p.seq_q, combine_task, &c);
      ffree(c.partials);
    }
    return kOk;
  }
  pl.nqb = (p.seq_q + BQ - 1) / BQ;
  pl.stream_kv = flash_streams_kv(p, pl.nqb);
  pl.bk = p.weights ? imax(p.seq_k, 1) : ATT_BK;
  pl.hs = flash_stacked_heads(p, pl);
  pl.gs = flash_heads_per_task(p, pl, workers);
  pl.scratch_floats = pl.gs * flash_rows_floats(p.head_dim, p.head_dim_v) + pl.bk * BQ;
  if (!scratch.alloc(workers, pl.scratch_floats)) return kErrAlloc;
  par.run(p.batch * (p.heads / pl.gs) * pl.nqb, flash_task, &c);
  return kOk;
}

// ---------------------------------------------------------------------------------------------
// Matmul: B packed in panels of MM_NB columns ([panel][k][MM_NB], zero padded); micro-kernel
// kMmMR rows x kMmNV vectors, depth blocked by MM_KC.
// ---------------------------------------------------------------------------------------------

static int64_t packed_b_floats_impl(int64_t k, int64_t n) { return ((n + MM_NB - 1) / MM_NB) * MM_NB * imax(k, 1); }

// dst[kk][j] = B[k0 + kk][c0 + j] for kk < kc, j < MM_NB: depth rows k0.. of panel pn (columns
// c0 = pn * MM_NB..), zero past column n. The slice is contiguous in the packed layout, so packing
// a whole B and packing one slice inside a matmul task make the same floats.
static void pack_panel(const float* b, int64_t ldb, bool tb, int64_t k0, int64_t kc, int64_t n, int64_t pn, float* dst) {
  const int64_t c0 = pn * MM_NB, cw = imin(MM_NB, n - c0);
  if (!tb) {
    for (int64_t kk = 0; kk < kc; ++kk) {
      const float* src = b + (k0 + kk) * ldb + c0;
      float* d = dst + kk * MM_NB;
      if (cw == MM_NB) {
        SA_UNROLL for (int v = 0; v < kMmNV; ++v) V::store(d + v * W, V::load(src + v * W));
        continue;
      }
      int64_t jj = 0;
      for (; jj < cw; ++jj) d[jj] = src[jj];
      for (; jj < MM_NB; ++jj) d[jj] = 0.0f;
    }
    return;
  }
#ifdef SA_HAVE_TRANSPOSE
  // W x W blocks through registers: rows c0 + j0.. of B (contiguous in depth) become packed rows
  for (int64_t j0 = 0; j0 < MM_NB; j0 += W) {
    const int64_t rows = iclamp(cw - j0, 0, W);
    for (int64_t kk0 = 0; kk0 < kc; kk0 += W) {
      const int kw = (int)imin(W, kc - kk0);
      T r[W];
      load_block(b + (c0 + j0) * ldb + k0 + kk0, ldb, rows, kw, r);
      V::transpose(r);
      SA_UNROLL for (int i = 0; i < W; ++i) if (i < kw) V::store(dst + (kk0 + i) * MM_NB + j0, r[i]);
    }
  }
#else
  for (int64_t jj = 0; jj < MM_NB; ++jj) {
    const float* src = b + (c0 + jj) * ldb + k0;
    for (int64_t kk = 0; kk < kc; ++kk) dst[kk * MM_NB + jj] = jj < cw ? src[kk] : 0.0f;
  }
#endif
}

static void pack_b_impl(const float* b, int64_t ldb, bool tb, int64_t k, int64_t n, float* dst, PackedB* out) {
  const int64_t np = (n + MM_NB - 1) / MM_NB;
  for (int64_t pn = 0; pn < np; ++pn) pack_panel(b, ldb, tb, 0, k, n, pn, dst + pn * k * MM_NB);
  if (out) {
    out->data = dst;
    out->k = k;
    out->n = n;
    out->panel = MM_NB;
  }
}

// init: 0 = zero, 1 = bias, 2 = accumulate into C
template <int R>
static inline void mm_tile(const float* __restrict a, int64_t lda, const float* __restrict bp, int64_t kc,
                           float* __restrict cp, int64_t ldc, int cols, int init, const float* __restrict bias,
                           const float* pf, int64_t pfl) {
  T acc[R][kMmNV];
  int cnt[kMmNV];
  SA_UNROLL for (int v = 0; v < kMmNV; ++v) cnt[v] = (int)iclamp(cols - v * W, 0, W);
  if (init == 0) {
    SA_UNROLL for (int r = 0; r < R; ++r) SA_UNROLL for (int v = 0; v < kMmNV; ++v) acc[r][v] = V::zero();
  } else if (init == 1) {
    T bv[kMmNV];
    SA_UNROLL for (int v = 0; v < kMmNV; ++v) bv[v] = cnt[v] == W ? V::load(bias + v * W) : V::load_partial(bias + v * W, cnt[v]);
    SA_UNROLL for (int r = 0; r < R; ++r) SA_UNROLL for (int v = 0; v < kMmNV; ++v) acc[r][v] = bv[v];
  } else {
    SA_UNROLL for (int r = 0; r < R; ++r) SA_UNROLL for (int v = 0; v < kMmNV; ++v)
      acc[r][v] = cnt[v] == W ? V::load(cp + r * ldc + v * W) : V::load_partial(cp + r * ldc + v * W, cnt[v]);
  }
  // the prefetching steps first, in a loop of their own (the plain loop needs one register less)
  const int64_t k1 = iclamp(pfl, 0, kc);  // pfl may be <= 0 (nothing left to prefetch)
  for (int64_t kk = 0; kk < k1; ++kk) {
    __builtin_prefetch(pf + kk * 16, 0, SA_MM_PFL);
    T bv[kMmNV];
    SA_UNROLL for (int v = 0; v < kMmNV; ++v) bv[v] = V::load(bp + kk * MM_NB + v * W);
    SA_UNROLL for (int r = 0; r < R; ++r) {
      T av = V::set1(a[r * lda + kk]);
      SA_UNROLL for (int v = 0; v < kMmNV; ++v) acc[r][v] = V::fmadd(av, bv[v], acc[r][v]);
    }
  }
  for (int64_t kk = k1; kk < kc; ++kk) {
    T bv[kMmNV];
    SA_UNROLL for (int v = 0; v < kMmNV; ++v) bv[v] = V::load(bp + kk * MM_NB + v * W);
    SA_UNROLL for (int r = 0; r < R; ++r) {
      T av = V::set1(a[r * lda + kk]);
      SA_UNROLL for (int v = 0; v < kMmNV; ++v) acc[r][v] = V::fmadd(av, bv[v], acc[r][v]);
    }
  }
  SA_UNROLL for (int r = 0; r < R; ++r) SA_UNROLL for (int v = 0; v < kMmNV; ++v) {
    if (cnt[v] == W) V::store(cp + r * ldc + v * W, acc[r][v]);
    else if (cnt[v] > 0) V::store_partial(cp + r * ldc + v * W, acc[r][v], cnt[v]);
  }
}

template <int R>
static inline void mm_dispatch(int r, const float* a, int64_t lda, const float* bp, int64_t kc, float* cp, int64_t ldc,
                               int cols, int init, const float* bias, const float* pf, int64_t pfl) {
  if constexpr (R > 0) {
    if (r == R) return mm_tile<R>(a, lda, bp, kc, cp, ldc, cols, init, bias, pf, pfl);
    mm_dispatch<R - 1>(r, a, lda, bp, kc, cp, ldc, cols, init, bias, pf, pfl);
  }
}

struct MmCtx {
  const MatmulParams* p;
  const float* packed;     // packed B of batch 0
  int64_t packed_stride;   // floats between packed B of consecutive batches (0 = shared)
  int64_t nmb, np;
  // B as given (packing stage, or packed slice by slice inside the tasks)
  const float* bsrc;
  int64_t ldb;
  int64_t strip;           // panels per task when the tasks pack B themselves
  Scratch* scratch;        // per worker: a strip's slices of one depth block
};

// where column col of C's row 0 lives (MatmulParams::c_block: column blocks stored apart)
static inline float* c_column(const MatmulParams& p, float* c, int64_t col) {
  return p.c_block > 0 ? c + (col / p.c_block) * p.c_block_stride + col % p.c_block : c + col;
}

// column blocks must hold whole panels, one matrix at a time
static inline bool c_blocks_ok(const MatmulParams& p) {
  return p.c_block == 0 || (p.c_block > 0 && p.c_block % MM_NB == 0 && p.batch == 1);
}

// Rows [r0, r1) of panel pn of matrix bi, depth block [k0, k0 + kc), against that block's packed
// slice bs ([kc][MM_NB]). nx: the next slice, prefetched towards L2 a share per row tile (the
// next depth block, or the next panel's first: panels lie one after another), or nullptr.
static void mm_block(const MatmulParams& p, int64_t bi, int64_t pn, int64_t r0, int64_t r1, int64_t k0, int64_t kc,
                     const float* bs, const float* nx) {
  const float* a = p.a + bi * p.stride_a;
  float* cc = c_column(p, p.c + bi * (p.m * p.ldc), pn * MM_NB);  // this panel's first column
  const int cols = (int)imin(MM_NB, p.n - pn * MM_NB);
  const float* bias = p.bias ? p.bias + pn * MM_NB : nullptr;
  const int init = k0 > 0 ? 2 : (bias ? 1 : 0);
  const int64_t ntiles = (r1 - r0 + kMmMR - 1) / kMmMR;
  const int64_t lines = nx ? (kc * MM_NB + 15) / 16 : 0, share = (lines + ntiles - 1) / ntiles;
  for (int64_t r = r0; r < r1; r += kMmMR) {
    int rr = (int)imin(kMmMR, r1 - r);
    const int64_t i = (r - r0) / kMmMR, pfl = imin(share, lines - i * share);
    mm_dispatch<kMmMR>(rr, a + r * p.lda + k0, p.lda, bs, kc, cc + r * p.ldc, p.ldc, cols, init, bias,
                       nx ? nx + i * share * 16 : nullptr, pfl);
  }
}

// C = bias (or 0) for rows [r0, r1) of panel pn of matrix bi: a product with k == 0
static void mm_fill(const MatmulParams& p, int64_t bi, int64_t pn, int64_t r0, int64_t r1) {
  float* cc = c_column(p, p.c + bi * (p.m * p.ldc), pn * MM_NB);
  const int cols = (int)imin(MM_NB, p.n - pn * MM_NB);
  const float* bias = p.bias ? p.bias + pn * MM_NB : nullptr;
  for (int64_t r = r0; r < r1; ++r)
    for (int j = 0; j < cols; ++j) cc[r * p.ldc + j] = bias ? bias[j] : 0.0f;
}

// task = (matrix, block of MM_MC rows, panel) against a B packed beforehand
static void mm_task(void* vctx, int64_t t, int) {
  MmCtx& c = *(MmCtx*)vctx;
  const MatmulParams& p = *c.p;
  const int64_t pn = t % c.np;
  const int64_t mb = (t / c.np) % c.nmb;
  const int64_t bi = t / (c.np * c.nmb);
  const int64_t r0 = mb * MM_MC, r1 = imin(p.m, r0 + MM_MC);
  if (p.k == 0) return mm_fill(p, bi, pn, r0, r1);
  const float* bp = c.packed + bi * c.packed_stride + pn * p.k * MM_NB;
  for (int64_t k0 = 0; k0 < p.k; k0 += MM_KC) {
    const int64_t kc = imin(MM_KC, p.k - k0);
    mm_block(p, bi, pn, r0, r1, k0, kc, bp + k0 * MM_NB, bp + (k0 + kc) * MM_NB);
  }
}

// task = (matrix, strip of c.strip panels), all of its rows: for each depth block, the strip's
// slices of packed B are made in the worker's scratch, then each block of MM_MC rows meets every
// slice (still in L1 or L2). The row tiles see the same packed floats in the same order as
// mm_task's, so the results are the same bit for bit. B [k, n] is copied row by row across the
// strip (one contiguous piece of each row, where slice after slice would walk down the rows
// once per panel: 1 x 768 x 3072 read B at ~9 GB/s that way); B [n, k] slice by slice, whose
// rows are contiguous in depth already.
static void mm_strip_task(void* vctx, int64_t t, int worker) {
  MmCtx& c = *(MmCtx*)vctx;
  const MatmulParams& p = *c.p;
  const int64_t ns = (c.np + c.strip - 1) / c.strip;
  const int64_t bi = t / ns, pn0 = (t % ns) * c.strip, pn1 = imin(c.np, pn0 + c.strip);
  if (p.k == 0) {
    for (int64_t pn = pn0; pn < pn1; ++pn) mm_fill(p, bi, pn, 0, p.m);
    return;
  }
  const float* b = c.bsrc + bi * p.stride_b;
  float* slices = c.scratch->bufs[worker];
  for (int64_t k0 = 0; k0 < p.k; k0 += MM_KC) {
    const int64_t kc = imin(MM_KC, p.k - k0);
    if (p.transpose_b || pn1 - pn0 == 1) {
      for (int64_t pn = pn0; pn < pn1; ++pn) pack_panel(b, c.ldb, p.transpose_b, k0, kc, p.n, pn, slices + (pn - pn0) * kc * MM_NB);
    } else {
      // whole panels straight from the row; a partial last one through pack_panel's padding
      const int64_t full = imin(pn1, p.n / MM_NB);
      for (int64_t kk = 0; kk < kc; ++kk) {
        const float* src = b + (k0 + kk) * c.ldb + pn0 * MM_NB;
        float* dst = slices + kk * MM_NB;
        for (int64_t pn = pn0; pn < full; ++pn, src += MM_NB, dst += kc * MM_NB)
          SA_UNROLL for (int v = 0; v < kMmNV; ++v) V::store(dst + v * W, V::load(src + v * W));
      }
      if (full < pn1) pack_panel(b, c.ldb, false, k0, kc, p.n, full, slices + (full - pn0) * kc * MM_NB);
    }
    for (int64_t r0 = 0; r0 < p.m; r0 += MM_MC)
      for (int64_t pn = pn0; pn < pn1; ++pn)
        mm_block(p, bi, pn, r0, imin(p.m, r0 + MM_MC), k0, kc, slices + (pn - pn0) * kc * MM_NB, nullptr);
  }
}

static int matmul_packed_impl(const MatmulParams& p, const PackedB& pb, Parallel& par) {
  if (p.batch <= 0 || p.m <= 0 || p.n <= 0) return kOk;
  if (pb.panel != MM_NB || pb.k != p.k || pb.n != p.n || !c_blocks_ok(p)) return kErrArgs;
  MmCtx c{};
  c.p = &p;
  c.packed = pb.data;
  c.packed_stride = 0;
  c.nmb = (p.m + MM_MC - 1) / MM_MC;
  c.np = (p.n + MM_NB - 1) / MM_NB;
  par.run(p.batch * c.nmb * c.np, mm_task, &c);
  return kOk;
}

// task = (matrix of B, panel): the packing stage runs on every worker
static void pack_task(void* vctx, int64_t t, int) {
  MmCtx& c = *(MmCtx*)vctx;
  const MatmulParams& p = *c.p;
  const int64_t bi = t / c.np, pn = t % c.np;
  pack_panel(c.bsrc + bi * p.stride_b, c.ldb, p.transpose_b, 0, p.k, p.n, pn,
             (float*)c.packed + bi * c.packed_stride + pn * p.k * MM_NB);
}

// Matmul with a few rows per B (a decoding step's projection, 1 x 768 x 3072): the products
// are too few to repay a packed copy of B, and the time is B's read from memory. So B is read
// in place, row after row ([k, n]: whole stretches of each row; [n, k]: W rows side by side
// through W x W register transposes), with no copy. Each element of C is still bias (or 0)
// followed by one fmadd per depth step in depth order, as in mm_tile, so the results equal the
// packed path's bit for bit (a row of C does not depend on how many rows share the call).
constexpr int64_t kFewRows = 4;     // rows per B up to which this path is taken
constexpr int64_t kFewCols = 2048;  // [k, n]: columns of C per pass (their partial sums stay in L1 or L2)

struct FewCtx {
  const MatmulParams* p;
  int64_t chunk, nchunks;  // columns per task
};

static inline T few_load(const float* x, int cnt) { return cnt == W ? V::load(x) : V::load_partial(x, cnt); }
static inline void few_store(float* x, T v, int cnt) {
  if (cnt == W) V::store(x, v);
  else V::store_partial(x, v, cnt);
}

// [k, n]: U depth steps of the R rows of C, columns [x0, x1) (cnt: W, or the last vector's
// width), A's values held in registers
template <int R, int U>
static inline void few_kn_steps(const MatmulParams& p, const float* br, int64_t ldb, float* c, int64_t x,
                                int cnt, const T (&av)[R][U]) {
  T bv[U];
  SA_UNROLL for (int u = 0; u < U; ++u) bv[u] = few_load(br + u * ldb + x, cnt);
  SA_UNROLL for (int r = 0; r < R; ++r) {
    float* cr = c + r * p.ldc + x;
    T cv = few_load(cr, cnt);
    SA_UNROLL for (int u = 0; u < U; ++u) cv = V::fmadd(av[r][u], bv[u], cv);
    few_store(cr, cv, cnt);
  }
}

// [k, n]: the R rows of C, columns [x0, x1), already holding their start. Depth steps go U at a
// time (R * U <= 8 of A's values held in registers), so each partial sum is loaded and stored
// once per U fmadds and each stretch of B's rows is loaded once for every row of C.
template <int R>
static void few_rows_kn(const MatmulParams& p, const float* a, const float* b, float* c, int64_t x0, int64_t x1) {
  constexpr int U = R <= 2 ? 4 : 2;
  const int64_t K = p.k, ldb = p.n;
  const int64_t xf = x0 + (x1 - x0) / W * W;  // full vectors end here
  int64_t kk = 0;
  for (; kk + U <= K; kk += U) {
    T av[R][U];
    SA_UNROLL for (int r = 0; r < R; ++r) SA_UNROLL for (int u = 0; u < U; ++u) av[r][u] = V::set1(a[r * p.lda + kk + u]);
    const float* br = b + kk * ldb;
    for (int64_t x = x0; x < xf; x += W) few_kn_steps<R, U>(p, br, ldb, c, x, W, av);
    if (xf < x1) few_kn_steps<R, U>(p, br, ldb, c, xf, (int)(x1 - xf), av);
  }
  for (; kk < K; ++kk) {
    T av[R][1];
    SA_UNROLL for (int r = 0; r < R; ++r) av[r][0] = V::set1(a[r * p.lda + kk]);
    const float* br = b + kk * ldb;
    for (int64_t x = x0; x < xf; x += W) few_kn_steps<R, 1>(p, br, ldb, c, x, W, av);
    if (xf < x1) few_kn_steps<R, 1>(p, br, ldb, c, xf, (int)(x1 - xf), av);
  }
}

#ifdef SA_HAVE_TRANSPOSE
#define SA_FEW_TRANSPOSED 1  // without register transposes a B [n, k] takes the packed path
#endif

#ifdef SA_FEW_TRANSPOSED
// [n, k]: columns [c0, c1) of C's R rows, W at a time from W rows of B read side by side, each
// W x W block turned so that lane j holds B[j][kk]. One row of C is one chain of fmadds, which
// from cache caps this at ~8 bytes of B per cycle; more blocks at a time (independent chains)
// read 1.3-2x faster from cache but 1.5-2x slower from memory (4096 x 4096: 16-32 rows of B
// side by side are more streams than the prefetchers follow), so one it is.
template <int R>
static void few_rows_nk(const MatmulParams& p, const float* a, const float* b, float* c, int64_t c0, int64_t c1) {
  const int64_t K = p.k, ldb = p.k;
  for (int64_t j0 = c0; j0 < c1; j0 += W) {
    const int cnt = (int)imin(W, c1 - j0);
    T acc[R];
    const T init = p.bias ? few_load(p.bias + j0, cnt) : V::zero();
    SA_UNROLL for (int r = 0; r < R; ++r) acc[r] = init;
    for (int64_t k0 = 0; k0 < K; k0 += W) {
      const int kw = (int)imin(W, K - k0);
      T blk[W];
      load_block(b + j0 * ldb + k0, ldb, cnt, kw, blk);
      V::transpose(blk);
      if (kw == W) {
        SA_UNROLL for (int kk = 0; kk < W; ++kk)
          SA_UNROLL for (int r = 0; r < R; ++r) acc[r] = V::fmadd(V::set1(a[r * p.lda + k0 + kk]), blk[kk], acc[r]);
      } else {
        for (int kk = 0; kk < kw; ++kk)
          SA_UNROLL for (int r = 0; r < R; ++r) acc[r] = V::fmadd(V::set1(a[r * p.lda + k0 + kk]), blk[kk], acc[r]);
      }
    }
    SA_UNROLL for (int r = 0; r < R; ++r) few_store(c + r * p.ldc + j0, acc[r], cnt);
  }
}
#endif

// task = (matrix, chunk of columns)
static void few_rows_task(void* vctx, int64_t t, int) {
  FewCtx& fc = *(FewCtx*)vctx;
  const MatmulParams& p = *fc.p;
  const int64_t bi = t / fc.nchunks, c0 = (t % fc.nchunks) * fc.chunk, c1 = imin(p.n, c0 + fc.chunk);
  const float* a = p.a + bi * p.stride_a;
  const float* b = p.b + bi * p.stride_b;
  float* c = p.c + bi * (p.m * p.ldc);
  if (!p.transpose_b) {
    for (int64_t x0 = c0; x0 < c1; x0 += kFewCols) {
      const int64_t x1 = imin(c1, x0 + kFewCols);
      for (int64_t r = 0; r < p.m; ++r)
        for (int64_t x = x0; x < x1; x += W) {
          const int cnt = (int)imin(W, x1 - x);
          few_store(c + r * p.ldc + x, p.bias ? few_load(p.bias + x, cnt) : V::zero(), cnt);
        }
      switch (p.m) {
        case 1: few_rows_kn<1>(p, a, b, c, x0, x1); break;
        case 2: few_rows_kn<2>(p, a, b, c, x0, x1); break;
        case 3: few_rows_kn<3>(p, a, b, c, x0, x1); break;
        default: few_rows_kn<4>(p, a, b, c, x0, x1); break;
      }
    }
    return;
  }
#ifdef SA_FEW_TRANSPOSED
  switch (p.m) {
    case 1: return few_rows_nk<1>(p, a, b, c, c0, c1);
    case 2: return few_rows_nk<2>(p, a, b, c, c0, c1);
    case 3: return few_rows_nk<3>(p, a, b, c, c0, c1);
    default: return few_rows_nk<4>(p, a, b, c, c0, c1);
  }
#endif
}

// true when matmul_impl takes the few-rows path
static inline bool few_rows_path(const MatmulParams& p) {
#ifndef SA_FEW_TRANSPOSED
  if (p.transpose_b) return false;
#endif
  return p.c_block == 0 && p.m <= kFewRows && (p.stride_b != 0 || p.batch * p.m <= kFewRows);
}

static int few_rows_matmul(const MatmulParams& p, Parallel& par) {
  FewCtx fc{};
  fc.p = &p;
  // about two chunks per worker, whole multiples of 16 columns (a vector's width on every ISA),
  // so that even a narrow C (n 64) is shared among the workers
  const int64_t per = (p.n + 2 * par.workers() - 1) / (2 * par.workers());
  fc.chunk = (per + 15) / 16 * 16;
  fc.nchunks = (p.n + fc.chunk - 1) / fc.chunk;
  par.run(p.batch * fc.nchunks, few_rows_task, &fc);
  return kOk;
}

static int matmul_impl(const MatmulParams& p, Parallel& par) {
  if (p.batch <= 0 || p.m <= 0 || p.n <= 0) return kOk;
  if (!c_blocks_ok(p)) return kErrArgs;
  if (few_rows_path(p)) return few_rows_matmul(p, par);
  MmCtx c{};
  c.p = &p;
  c.bsrc = p.b;
  c.ldb = p.transpose_b ? p.k : p.n;
  c.nmb = (p.m + MM_MC - 1) / MM_MC;
  c.np = (p.n + MM_NB - 1) / MM_NB;
  // When each B meets only a few blocks of rows, the tasks pack it themselves, a slice at a time
  // into L1/L2, instead of a whole packed copy of B being written to memory (by one thread per
  // matrix), read back, and allocated and page-faulted on every call. Paired runs here, strips
  // against the packed copy: 256 x 768 x 2304 +24-39%, 384 x 768 x 3072 +29-32%, 500^3 +7-20%,
  // 576 x 768 x 3072 +12-14%; 768^3 -8 to -9%, 1024^3 -6 to -14%. With more blocks of rows than
  // kStripMaxRowBlocks, a B shared by many small matrices, or too few panels to give every
  // worker strips (the strip tasks do not split rows), B is packed once, as below.
  const int64_t row_blocks_per_b = p.stride_b != 0 ? c.nmb : p.batch * c.nmb;
  if (row_blocks_per_b <= kStripMaxRowBlocks && (c.nmb == 1 || p.batch * c.np >= 4 * (int64_t)par.workers())) {
    // strips of panels: enough tasks to balance the workers, few enough that a task reads
    // several 64-byte pieces of each row of B it visits
    c.strip = iclamp(c.np / (4 * (int64_t)par.workers()), 1, 8);
    Scratch scratch;
    if (!scratch.alloc(par.workers(), c.strip * imin(MM_KC, imax(p.k, 1)) * MM_NB)) return kErrAlloc;
    c.scratch = &scratch;
    par.run(p.batch * ((c.np + c.strip - 1) / c.strip), mm_strip_task, &c);
    return kOk;
  }
  const int64_t per = packed_b_floats_impl(p.k, p.n);
  const int64_t nb = p.stride_b == 0 ? 1 : p.batch;
  float* packed = falloc(count_mul(per, nb));
  if (!packed) return kErrAlloc;
  c.packed = packed;
  c.packed_stride = p.stride_b == 0 ? 0 : per;
  if (p.k > 0) par.run(nb * c.np, pack_task, &c);
  par.run(p.batch * c.nmb * c.np, mm_task, &c);
  ffree(packed);
  return kOk;
}

// ---------------------------------------------------------------------------------------------
// Softmax over rows: out = softmax(scale * x); a row of -Infinity gives zeros.
// ---------------------------------------------------------------------------------------------

struct SmCtx {
  const SoftmaxParams* p;
  int64_t rows_per_task;
};

static void softmax_task(void* vctx, int64_t t, int) {
  SmCtx& c = *(SmCtx*)vctx;
  const SoftmaxParams& p = *c.p;
  const int64_t n = p.cols;
  const float sc = p.scale * kLog2e;
  const T scv = V::set1(sc);
  for (int64_t r = t * c.rows_per_task; r < imin(p.rows, (t + 1) * c.rows_per_task); ++r) {
    const float* x = p.x + r * n;
    float* y = p.out + r * n;
    // y = (x - m) * scale * log2e, m the row's max (its min when scale < 0), so that scale * x
    // itself is never formed: times log2e it overflows for |x| near FLT_MAX, and a row of such
    // values (a torch.finfo(float32).min mask) came out as zeros instead of uniform weights.
    // With scale 0 every weight is equal (NaN where x is infinite, as 0 * x makes it).
    const float sg = sc < 0.0f ? -1.0f : 1.0f;
    const T sgv = V::set1(sg);
    float mx = kNegInf;  // max of sg * x
    bool nan = false;
    {
      // the row's max, and x * 0 summed alongside: NaN only when the row holds a NaN or an
      // infinity, so the scalar look for a NaN runs only then (it took more time than the rest)
      T m = V::set1(kNegInf), odd = V::zero();
      const T z = V::zero();
      int64_t j = 0;
      for (; j + W <= n; j += W) {
        const T v = V::load(x + j);
        m = V::max(m, V::mul(v, sgv));
        odd = V::fmadd(v, z, odd);
      }
      mx = V::hmax(m);
      float odds = V::hsum(odd);
      for (; j < n; ++j) {
        mx = x[j] * sg > mx ? x[j] * sg : mx;
        odds += x[j] * 0.0f;
      }
      if (odds != odds)
        for (j = 0; j < n && !nan; ++j) nan = x[j] != x[j];
    }
    if (!nan && mx == kNegInf && sc != 0.0f) {  // scale * x is -Infinity everywhere
      for (int64_t j = 0; j < n; ++j) y[j] = 0.0f;
      continue;
    }
    // y = exp2((x - mref) * scale * log2e) and its sum, in one pass; with scale 0, (x - 0) * 0 is
    // x * 0 itself. The sum goes in pieces of kSumKeys floats (one running sum: 4.6e-5 relative
    // at a million columns).
    const float mref = sc == 0.0f ? 0.0f : sg * mx;
    const T mv = V::set1(mref);
    T acc = V::zero();
    const int64_t nw = n / W * W;
    for (int64_t j0 = 0; j0 < nw; j0 += kSumKeys) {
      const int64_t j1 = imin(nw, j0 + kSumKeys);
      T blk = V::zero();
      for (int64_t j = j0; j < j1; j += W) {
        const T e = V::exp2(V::mul(V::sub(V::load(x + j), mv), scv));
        V::store(y + j, e);
        blk = V::add(blk, e);
      }
      acc = V::add(acc, blk);
    }
    int64_t j = nw;
    if (j < n) {
      const int rem = (int)(n - j);
      V::store_partial(y + j, V::exp2(V::mul(V::sub(V::load_partial(x + j, rem), mv), scv)), rem);
      acc = V::add(acc, V::load_partial(y + j, rem));
    }
    const float s = V::hsum(acc);
    const float inv = 1.0f / s;
    const T iv = V::set1(inv);
    for (j = 0; j + W <= n; j += W) V::store(y + j, V::mul(V::load(y + j), iv));
    for (; j < n; ++j) y[j] *= inv;
  }
}

static int softmax_impl(const SoftmaxParams& p, Parallel& par) {
  if (p.rows <= 0 || p.cols <= 0) return kOk;
  SmCtx c;
  c.p = &p;
  c.rows_per_task = imax(1, 16384 / imax(p.cols, 1));
  par.run((p.rows + c.rows_per_task - 1) / c.rows_per_task, softmax_task, &c);
  return kOk;
}

static void exp2_n_impl(const float* x, float* y, int64_t n) {
  int64_t j = 0;
  for (; j + W <= n; j += W) V::store(y + j, V::exp2(V::load(x + j)));
  if (j < n) V::store_partial(y + j, V::exp2(V::load_partial(x + j, (int)(n - j))), (int)(n - j));
}

static double fma_probe_impl(int64_t iters) {
  T acc[kProbeAcc];
  SA_UNROLL for (int i = 0; i < kProbeAcc; ++i) acc[i] = V::set1(1.0f + 0.001f * (float)i);
  const T a = V::set1(0.9999999f), bb = V::set1(1e-7f);
  for (int64_t it = 0; it < iters; ++it) {
    SA_UNROLL for (int u = 0; u < 4; ++u) {
      SA_UNROLL for (int i = 0; i < kProbeAcc; ++i) acc[i] = V::fmadd(acc[i], a, bb);
    }
  }
  T s = acc[0];
  for (int i = 1; i < kProbeAcc; ++i) s = V::add(s, acc[i]);
  volatile float sink = V::hsum(s);
  (void)sink;
  return (double)iters * 4.0 * kProbeAcc * W * 2.0;
}

static const KernelTable kTable = {
    kIsaName,        attention_impl,      matmul_impl,  matmul_packed_impl, packed_b_floats_impl,
    pack_b_impl,     softmax_impl,        exp2_n_impl,  fma_probe_impl,     W,
};
