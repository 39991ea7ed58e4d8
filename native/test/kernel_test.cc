// Kernel test driver, independent of Node: every ISA this CPU runs (or the ones named on the
// command line) against a naive double-precision reference on awkward shapes, every attention
// option, thread-count determinism, and the measured error of the vectorised exp2.
// Built by .ci/native-kernels.sh (x86-64: every ISA here, plus "emu16", the shared kernels over
// 16 emulated lanes) and .ci/native-neon.sh (cross-compiled, run under qemu-aarch64).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../include/attention_kernels.h"
#include "../thread_pool.h"

using namespace sa;

#ifdef SA_KERNEL_TEST_EMU16
namespace sa {
const KernelTable* kernels_emu16();  // emu16_kernels.cc: the shared kernels over 16 emulated lanes
}
#endif

// the table for a name on the command line: an ISA this CPU runs, or "emu16" where built in
static const KernelTable* table_named(const char* name) {
#ifdef SA_KERNEL_TEST_EMU16
  if (!strcmp(name, "emu16")) return kernels_emu16();
#endif
  return kernels_for(name);
}

static int failures = 0;
static std::mt19937 rng(1234);
static float urand() { return std::uniform_real_distribution<float>(-1.f, 1.f)(rng); }

struct Case {
  int64_t B, Hq, Hkv, Sq, Sk, D, Dv;
  bool causal, bshd, weights;
  int mask;  // 0 none, 1 additive [Sq,Sk], 2 boolean [B,1,Sq,Sk], 3 additive [B,Hq,Sq,Sk]
  bool keylens;
};

static void ref_attention(const AttnParams& p, std::vector<double>& out, std::vector<double>& w) {
  const int64_t G = p.heads / p.kv_heads, off = p.seq_k - p.seq_q;
  out.assign((size_t)(p.batch * p.heads * p.seq_q * p.head_dim_v), 0.0);
  w.assign((size_t)(p.batch * p.heads * p.seq_q * p.seq_k), 0.0);
  std::vector<double> s((size_t)p.seq_k);
  std::vector<char> vis((size_t)p.seq_k);
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t h = 0; h < p.heads; ++h)
      for (int64_t i = 0; i < p.seq_q; ++i) {
        const int64_t kh = h / G;
        double mx = -INFINITY;
        bool any = false;
        for (int64_t j = 0; j < p.seq_k; ++j) {
          bool v = true;
          if (p.causal && j > i + off) v = false;
          if (p.key_lengths && j >= p.key_lengths[b]) v = false;
          double sv = 0;
          for (int64_t d = 0; d < p.head_dim; ++d)
            sv += (double)p.q[b * p.q_sb + h * p.q_sh + i * p.q_ss + d] * p.k[b * p.k_sb + kh * p.k_sh + j * p.k_ss + d];
          sv *= p.scale;
          int64_t mi = b * p.m_sb + h * p.m_sh + i * p.m_sq + j * p.m_sk;
          if (p.mask_kind == kMaskAdditive) sv += ((const float*)p.mask)[mi];
          if (p.mask_kind == kMaskBoolean && !((const uint8_t*)p.mask)[mi]) v = false;
          vis[(size_t)j] = v;  // hidden keys: never read (additive -inf is not hidden, only weightless)
          s[(size_t)j] = sv;
          if (v && std::isnan(sv)) mx = NAN;
          if (v && !std::isnan(mx) && sv > mx) mx = sv;
        }
        // as the TypeScript reference: no finite score gives zero weights, yet the visible keys'
        // values are still multiplied by them (0 * NaN = NaN)
        any = !(mx == -INFINITY);
        double l = 0;
        for (int64_t j = 0; j < p.seq_k; ++j) { s[(size_t)j] = vis[(size_t)j] && any ? std::exp(s[(size_t)j] - mx) : 0.0; l += s[(size_t)j]; }
        for (int64_t j = 0; j < p.seq_k; ++j) {
          double pj = any ? s[(size_t)j] / l : 0.0;
          w[(size_t)(((b * p.heads + h) * p.seq_q + i) * p.seq_k + j)] = pj;
          if (!vis[(size_t)j]) continue;
          for (int64_t c = 0; c < p.head_dim_v; ++c)
            out[(size_t)(((b * p.heads + h) * p.seq_q + i) * p.head_dim_v + c)] += pj * p.v[b * p.v_sb + kh * p.v_sh + j * p.v_ss + c];
        }
      }
}

static bool close_enough(double ref, float got, double tol) {
  if (std::isnan(ref) || std::isnan(got)) return std::isnan(ref) && std::isnan(got);
  return std::fabs(ref - got) <= tol * (1.0 + std::fabs(ref));
}

static void run_case(const KernelTable* kt, const Case& c, Parallel& par, const char* tag) {
  std::vector<float> q(c.B * c.Hq * c.Sq * c.D), k(c.B * c.Hkv * c.Sk * c.D), v(c.B * c.Hkv * c.Sk * c.Dv);
  for (auto& x : q) x = urand() * 2;
  for (auto& x : k) x = urand() * 2;
  for (auto& x : v) x = urand();
  if (rng() % 4 == 0) v[rng() % v.size()] = NAN;  // hidden keys' values must never be read
  if (rng() % 8 == 0) q[rng() % q.size()] = NAN;  // NaN propagates to its whole row
  std::vector<float> out(c.B * c.Hq * c.Sq * c.Dv, 12345.f), w(c.weights ? c.B * c.Hq * c.Sq * c.Sk : 0, 777.f);
  std::vector<float> maskf;
  std::vector<uint8_t> maskb;
  std::vector<int32_t> kl;
  AttnParams p{};
  p.q = q.data(); p.k = k.data(); p.v = v.data(); p.out = out.data(); p.weights = c.weights ? w.data() : nullptr;
  p.batch = c.B; p.heads = c.Hq; p.kv_heads = c.Hkv; p.seq_q = c.Sq; p.seq_k = c.Sk; p.head_dim = c.D; p.head_dim_v = c.Dv;
  auto strides = [&](int64_t H, int64_t S, int64_t D, int64_t& sb, int64_t& sh, int64_t& ss) {
    if (c.bshd) { sb = S * H * D; ss = H * D; sh = D; } else { sb = H * S * D; sh = S * D; ss = D; }
  };
  strides(c.Hq, c.Sq, c.D, p.q_sb, p.q_sh, p.q_ss);
  strides(c.Hkv, c.Sk, c.D, p.k_sb, p.k_sh, p.k_ss);
  strides(c.Hkv, c.Sk, c.Dv, p.v_sb, p.v_sh, p.v_ss);
  strides(c.Hq, c.Sq, c.Dv, p.o_sb, p.o_sh, p.o_ss);
  p.scale = 1.0f / std::sqrt((float)std::max<int64_t>(c.D, 1));
  p.causal = c.causal;
  if (c.mask == 1) {
    maskf.resize(c.Sq * c.Sk);
    for (auto& x : maskf) x = (rng() % 5 == 0) ? -INFINITY : urand();
    p.mask_kind = kMaskAdditive; p.mask = maskf.data(); p.m_sq = c.Sk; p.m_sk = 1;
  } else if (c.mask == 2) {
    maskb.resize(c.B * c.Sq * c.Sk);
    for (auto& x : maskb) x = (rng() % 3) != 0;
    p.mask_kind = kMaskBoolean; p.mask = maskb.data(); p.m_sb = c.Sq * c.Sk; p.m_sq = c.Sk; p.m_sk = 1;
  } else if (c.mask == 3) {
    maskf.resize(c.B * c.Hq * c.Sq * c.Sk);
    for (auto& x : maskf) x = urand() * 3;
    p.mask_kind = kMaskAdditive; p.mask = maskf.data(); p.m_sb = c.Hq * c.Sq * c.Sk; p.m_sh = c.Sq * c.Sk; p.m_sq = c.Sk; p.m_sk = 1;
  }
  // an additive mask is never read at keys the causal rule hides: NaN or +Infinity there must
  // not reach the row (half the causal cases)
  if (p.mask_kind == kMaskAdditive && c.causal && rng() % 2 == 0) {
    const float poison = rng() % 2 ? NAN : INFINITY;
    for (size_t x = 0; x < maskf.size(); ++x) {
      const int64_t i = (int64_t)(x / c.Sk) % c.Sq, j = (int64_t)(x % c.Sk);
      if (j > i + c.Sk - c.Sq) maskf[x] = poison;
    }
  }
  if (c.keylens) {
    kl.resize(c.B);
    for (auto& x : kl) x = (int32_t)(rng() % (c.Sk + 1));
    p.key_lengths = kl.data();
  }
  int st = kt->attention(p, par);
  std::vector<double> ro, rw;
  ref_attention(p, ro, rw);
  bool bad = st != kOk;
  for (int64_t b = 0; b < c.B && !bad; ++b)
    for (int64_t h = 0; h < c.Hq; ++h)
      for (int64_t i = 0; i < c.Sq; ++i)
        for (int64_t x = 0; x < c.Dv; ++x) {
          double r = ro[(size_t)(((b * c.Hq + h) * c.Sq + i) * c.Dv + x)];
          float g = out[(size_t)(b * p.o_sb + h * p.o_sh + i * p.o_ss + x)];
          if (!close_enough(r, g, 2e-5)) {
            if (!bad) fprintf(stderr, "  out[%lld,%lld,%lld,%lld] ref %g got %g\n", (long long)b, (long long)h, (long long)i, (long long)x, r, g);
            bad = true;
          }
        }
  if (c.weights)
    for (size_t x = 0; x < w.size() && !bad; ++x)
      if (!close_enough(rw[x], w[x], 2e-5)) {
        fprintf(stderr, "  weights[%zu] ref %g got %g\n", x, rw[x], w[x]);
        bad = true;
      }
  if (bad) {
    ++failures;
    fprintf(stderr, "FAIL %s %s attention B%lld Hq%lld Hkv%lld Sq%lld Sk%lld D%lld Dv%lld causal%d bshd%d w%d mask%d kl%d st%d\n", kt->name, tag,
            (long long)c.B, (long long)c.Hq, (long long)c.Hkv, (long long)c.Sq, (long long)c.Sk, (long long)c.D, (long long)c.Dv,
            c.causal, c.bshd, c.weights, c.mask, c.keylens, st);
  }
}

static void test_matmul(const KernelTable* kt, Parallel& par) {
  const int64_t shapes[][4] = {{1, 1, 1, 1}, {1, 7, 5, 3}, {2, 13, 67, 33}, {3, 6, 64, 300}, {1, 100, 130, 257}, {2, 1, 17, 1}};
  for (auto& s : shapes)
    for (int tb = 0; tb < 2; ++tb)
      for (int bias = 0; bias < 2; ++bias)
        for (int bcastB = 0; bcastB < 2; ++bcastB) {
          int64_t batch = s[0], m = s[1], n = s[2], kk = s[3];
          std::vector<float> a(batch * m * kk), b((bcastB ? 1 : batch) * kk * n), bi(n), c(batch * m * n, 99.f);
          for (auto& x : a) x = urand();
          for (auto& x : b) x = urand();
          for (auto& x : bi) x = urand();
          MatmulParams p{a.data(), b.data(), c.data(), bias ? bi.data() : nullptr, batch, m, n, kk, m * kk, bcastB ? 0 : kk * n, kk, n, tb == 1};
          int st = kt->matmul(p, par);
          bool bad = st != kOk;
          for (int64_t z = 0; z < batch && !bad; ++z)
            for (int64_t i = 0; i < m && !bad; ++i)
              for (int64_t j = 0; j < n && !bad; ++j) {
                double r = bias ? bi[j] : 0;
                for (int64_t t = 0; t < kk; ++t)
                  r += (double)a[z * m * kk + i * kk + t] * (tb ? b[(bcastB ? 0 : z) * kk * n + j * kk + t] : b[(bcastB ? 0 : z) * kk * n + t * n + j]);
                if (!close_enough(r, c[z * m * n + i * n + j], 1e-5 * std::sqrt((double)kk))) {
                  fprintf(stderr, "FAIL %s matmul %lld %lld %lld %lld tb%d bias%d bc%d at %lld,%lld,%lld ref %g got %g\n", kt->name, (long long)batch,
                          (long long)m, (long long)n, (long long)kk, tb, bias, bcastB, (long long)z, (long long)i, (long long)j, r, c[z * m * n + i * n + j]);
                  bad = true;
                }
              }
          if (bad) ++failures;
        }
}

// C written as column blocks (MatmulParams::c_block, the multi-head block's head-major Q/K/V):
// the same values as the row layout, each block its own matrix; a block narrower than a panel is
// refused with kErrArgs
static void test_matmul_column_blocks(const KernelTable* kt, Parallel& par) {
  const int64_t m = 29, kk = 70;
  int64_t panel = 0;
  {
    PackedB probe{};
    std::vector<float> one(kt->packed_b_floats(1, 1)), b1(1, 1.f);
    kt->pack_b(b1.data(), 1, true, 1, 1, one.data(), &probe);
    panel = probe.panel;
  }
  const int64_t cb = 2 * panel, nblocks = 3, n = cb * nblocks, stride = m * cb + 5;
  std::vector<float> a(m * kk), b(n * kk), bias(n), rows(m * n), blocks(nblocks * stride, 99.f);
  for (auto& x : a) x = urand();
  for (auto& x : b) x = urand();
  for (auto& x : bias) x = urand();
  std::vector<float> packed(kt->packed_b_floats(kk, n));
  PackedB pb{};
  kt->pack_b(b.data(), kk, true, kk, n, packed.data(), &pb);
  MatmulParams pr{a.data(), nullptr, rows.data(), bias.data(), 1, m, n, kk, 0, 0, kk, n, true};
  MatmulParams pc{a.data(), nullptr, blocks.data(), bias.data(), 1, m, n, kk, 0, 0, kk, cb, true};
  pc.c_block = cb;
  pc.c_block_stride = stride;
  bool bad = kt->matmul_packed(pr, pb, par) != kOk || kt->matmul_packed(pc, pb, par) != kOk;
  for (int64_t i = 0; i < m && !bad; ++i)
    for (int64_t j = 0; j < n && !bad; ++j)
      if (rows[i * n + j] != blocks[(j / cb) * stride + i * cb + j % cb]) bad = true;
  for (int64_t blk = 0; blk < nblocks && !bad; ++blk)  // the gaps between blocks are untouched
    for (int64_t x = m * cb; x < stride; ++x) bad |= blocks[blk * stride + x] != 99.f;
  MatmulParams narrow = pc;
  narrow.c_block = panel > 1 ? panel / 2 : 0;
  if (panel > 1 && kt->matmul_packed(narrow, pb, par) != kErrArgs) bad = true;
  if (bad) {
    ++failures;
    fprintf(stderr, "FAIL %s matmul with column blocks of %lld\n", kt->name, (long long)cb);
  }
}

// matmul packs B itself: a whole copy of it, or (with a few blocks of rows per B) one slice at a
// time inside the tasks; either way C must equal, bit for bit, matmul_packed against a B packed
// beforehand, whose values test_matmul checks against the reference. Shapes: one row, a
// partial last panel, depths past one depth block and not a multiple of the lanes, batched,
// several row blocks in the slice-at-a-time tasks (150-390 rows) and past them (700 rows),
// and one to four rows, which read B in place (a depth past a multiple of the lanes and of the
// few-rows path's four steps, and more columns than one of its passes).
static void test_matmul_self_packed(const KernelTable* kt, Parallel& par) {
  const int64_t shapes[][4] = {{1, 1, 3072, 768}, {1, 5, 77, 300}, {2, 96, 40, 513}, {3, 1, 33, 9}, {1, 97, 50, 260}, {1, 4, 1, 0},
                               {1, 200, 300, 260}, {2, 150, 130, 300}, {1, 390, 70, 33}, {1, 700, 40, 20},
                               {1, 2, 100, 37}, {1, 3, 70, 260}, {2, 4, 33, 15}, {1, 1, 2100, 5}};
  for (auto& s : shapes)
    for (int tb = 0; tb < 2; ++tb)
      for (int bias = 0; bias < 2; ++bias) {
        const int64_t batch = s[0], m = s[1], n = s[2], kk = s[3];
        std::vector<float> a(batch * m * kk + 1), b(batch * kk * n + 1), bi(n), c(batch * m * n, 99.f), want(batch * m * n, 7.f);
        for (auto& x : a) x = urand();
        for (auto& x : b) x = urand();
        for (auto& x : bi) x = urand();
        MatmulParams p{a.data(), b.data(), c.data(), bias ? bi.data() : nullptr, batch, m, n, kk, m * kk, kk * n, kk, n, tb == 1};
        bool bad = kt->matmul(p, par) != kOk;
        std::vector<float> packed(kt->packed_b_floats(kk, n));
        for (int64_t z = 0; z < batch && !bad; ++z) {
          PackedB pb{};
          kt->pack_b(b.data() + z * kk * n, tb ? kk : n, tb == 1, kk, n, packed.data(), &pb);
          MatmulParams one{a.data() + z * m * kk, nullptr, want.data() + z * m * n, p.bias, 1, m, n, kk, 0, 0, kk, n, tb == 1};
          bad = kt->matmul_packed(one, pb, par) != kOk;
        }
        for (int64_t x = 0; x < batch * m * n && !bad; ++x) bad = c[x] != want[x];
        if (bad) {
          ++failures;
          fprintf(stderr, "FAIL %s matmul %lld x %lld x %lld x %lld tb%d bias%d differs from matmul_packed\n", kt->name, (long long)batch,
                  (long long)m, (long long)n, (long long)kk, tb, bias);
        }
      }
}

static void test_softmax(const KernelTable* kt, Parallel& par) {
  const int64_t shapes[][2] = {{1, 1}, {3, 7}, {5, 16}, {2, 33}, {40, 1000}};
  for (auto& s : shapes) {
    std::vector<float> x(s[0] * s[1]), y(x.size());
    for (auto& e : x) e = urand() * 10;
    if (s[1] > 2) x[1] = -INFINITY;
    float scale = 0.7f;
    SoftmaxParams p{x.data(), y.data(), s[0], s[1], scale};
    kt->softmax(p, par);
    for (int64_t r = 0; r < s[0]; ++r) {
      double mx = -INFINITY, l = 0;
      for (int64_t j = 0; j < s[1]; ++j) mx = std::max(mx, (double)x[r * s[1] + j] * scale);
      for (int64_t j = 0; j < s[1]; ++j) l += std::exp((double)x[r * s[1] + j] * scale - mx);
      for (int64_t j = 0; j < s[1]; ++j) {
        double ref = std::exp((double)x[r * s[1] + j] * scale - mx) / l;
        if (!close_enough(ref, y[r * s[1] + j], 1e-6)) {
          fprintf(stderr, "FAIL %s softmax %lldx%lld ref %g got %g\n", kt->name, (long long)s[0], (long long)s[1], ref, y[r * s[1] + j]);
          ++failures;
          return;
        }
      }
    }
  }
}

// Maximum relative error of the vectorised exp2 over [-126, 0] (the range softmax feeds it).
static double test_exp2(const KernelTable* kt) {
  const int64_t n = 1 << 20;
  std::vector<float> x(n), y(n);
  for (int64_t i = 0; i < n; ++i) x[i] = -126.0f * (float)i / (float)(n - 1);
  x[0] = 0.0f;
  kt->exp2_n(x.data(), y.data(), n);
  double maxrel = 0;
  for (int64_t i = 0; i < n; ++i) {
    double r = std::exp2((double)x[i]);
    maxrel = std::max(maxrel, std::fabs(y[i] - r) / r);
  }
  float sp[5] = {-INFINITY, NAN, -200.f, -126.5f, 0.f}, sy[5];
  kt->exp2_n(sp, sy, 5);
  if (sy[0] != 0.f || !std::isnan(sy[1]) || sy[2] != 0.f || sy[3] != 0.f || sy[4] != 1.f) {
    fprintf(stderr, "FAIL %s exp2 specials: %g %g %g %g %g\n", kt->name, sy[0], sy[1], sy[2], sy[3], sy[4]);
    ++failures;
  }
  if (maxrel > 5e-7) {
    fprintf(stderr, "FAIL %s exp2 max relative error %g\n", kt->name, maxrel);
    ++failures;
  }
  return maxrel;
}

static void test_determinism(const KernelTable* kt) {
  // the third: query heads per flash task (one kv head's group) 4, 2 and 1 for 1, 2 and 3 threads
  Case shapes[] = {{1, 4, 2, 150, 300, 64, 64, true, false, false, 0, false}, {1, 8, 8, 1, 5000, 64, 64, false, false, false, 0, false},
                   {1, 8, 1, 30, 700, 64, 64, true, false, false, 0, false}};
  for (auto& c : shapes) {
    std::vector<float> q(c.B * c.Hq * c.Sq * c.D), k(c.B * c.Hkv * c.Sk * c.D), v(c.B * c.Hkv * c.Sk * c.Dv);
    for (auto& x : q) x = urand();
    for (auto& x : k) x = urand();
    for (auto& x : v) x = urand();
    std::vector<float> first;
    for (int th = 1; th <= 3; ++th) {
      ThreadPool pool(th);
      std::vector<float> out(c.B * c.Hq * c.Sq * c.Dv);
      AttnParams p{};
      p.q = q.data(); p.k = k.data(); p.v = v.data(); p.out = out.data();
      p.batch = c.B; p.heads = c.Hq; p.kv_heads = c.Hkv; p.seq_q = c.Sq; p.seq_k = c.Sk; p.head_dim = c.D; p.head_dim_v = c.Dv;
      p.q_sb = c.Hq * c.Sq * c.D; p.q_sh = c.Sq * c.D; p.q_ss = c.D;
      p.k_sb = c.Hkv * c.Sk * c.D; p.k_sh = c.Sk * c.D; p.k_ss = c.D;
      p.v_sb = c.Hkv * c.Sk * c.Dv; p.v_sh = c.Sk * c.Dv; p.v_ss = c.Dv;
      p.o_sb = c.Hq * c.Sq * c.Dv; p.o_sh = c.Sq * c.Dv; p.o_ss = c.Dv;
      p.scale = 0.125f; p.causal = c.causal;
      kt->attention(p, pool);
      if (th == 1) first = out;
      else if (memcmp(first.data(), out.data(), out.size() * 4)) {
        fprintf(stderr, "FAIL %s determinism threads=%d Sq=%lld\n", kt->name, th, (long long)c.Sq);
        ++failures;
      }
    }
  }
}

int main(int argc, char** argv) {
  if (const char* seed = getenv("KERNEL_TEST_SEED")) rng.seed((unsigned)strtoul(seed, nullptr, 10));
  std::vector<const KernelTable*> tables;
  if (argc > 1) {
    for (int i = 1; i < argc; ++i) {
      const KernelTable* t = table_named(argv[i]);
      if (!t) { fprintf(stderr, "ISA %s not supported here\n", argv[i]); return 2; }
      tables.push_back(t);
    }
  } else {
    const char* isas[8];
    int n = supported_isas(isas, 8);
    for (int i = 0; i < n; ++i) tables.push_back(kernels_for(isas[i]));
  }
  const int64_t sqs[] = {1, 3, 8, 17, 64, 65, 130};
  const int64_t sks[] = {1, 5, 64, 67, 200};
  const int64_t ds[][2] = {{1, 1}, {3, 5}, {16, 16}, {33, 7}, {64, 64}};
  ThreadPool pool2(2);
  for (const KernelTable* kt : tables) {
    SerialParallel serial;
    int cases = 0;
    for (int64_t sq : sqs)
      for (int64_t sk : sks)
        for (auto& d : ds) {
          Case c{1 + (int64_t)(rng() % 2), 4, (rng() % 2) ? 2 : 4, sq, sk, d[0], d[1], (rng() % 2) == 1, (rng() % 2) == 1, (rng() % 3) == 0,
                 (int)(rng() % 4), (rng() % 3) == 0};
          run_case(kt, c, (cases % 2) ? (Parallel&)pool2 : (Parallel&)serial, "grid");
          ++cases;
        }
    // decode with the key split, GQA, long rows
    for (int64_t sk : {2048, 2100, 4097}) {
      run_case(kt, Case{1, 8, 2, 1, sk, 64, 64, false, false, false, 0, false}, pool2, "split");
      run_case(kt, Case{2, 4, 1, 2, sk, 128, 32, true, true, false, 1, true}, pool2, "split");
      run_case(kt, Case{1, 4, 4, 3, sk, 64, 64, true, false, false, 0, false}, pool2, "split");
    }
    // few query blocks against long K and V rows: the flash path prefetches them (flash_streams_kv)
    run_case(kt, Case{1, 4, 2, 40, 2100, 64, 64, true, false, false, 0, true}, pool2, "stream");
    run_case(kt, Case{2, 2, 1, 9, 1100, 128, 96, false, true, false, 2, false}, pool2, "stream");
    run_case(kt, Case{1, 2, 2, 300, 300, 64, 64, true, false, true, 0, false}, pool2, "weights");
    run_case(kt, Case{1, 2, 1, 40, 129, 48, 80, true, true, false, 2, true}, pool2, "mixed");
    run_case(kt, Case{1, 2, 2, 200, 100, 16, 16, true, false, false, 0, false}, pool2, "sq>sk");
    // a grouped-query kv head's query heads stacked in one block's lanes (few rows per head):
    // per-head masks, causal with Sk > Sq, bshd, key lengths, rows that do not fill the block
    run_case(kt, Case{1, 8, 2, 16, 300, 64, 64, true, false, false, 3, false}, pool2, "stacked");
    run_case(kt, Case{2, 8, 1, 13, 200, 32, 48, true, true, false, 2, true}, pool2, "stacked");
    run_case(kt, Case{1, 12, 3, 9, 130, 64, 64, false, false, false, 3, true}, serial, "stacked");
    run_case(kt, Case{1, 32, 8, 16, 1000, 128, 128, true, false, false, 1, false}, pool2, "stacked");
    run_case(kt, Case{1, 6, 2, 8, 8, 16, 16, true, false, false, 3, false}, serial, "stacked");
    test_matmul(kt, pool2);
    test_matmul_column_blocks(kt, pool2);
    test_matmul_self_packed(kt, pool2);
    test_matmul_self_packed(kt, serial);
    test_softmax(kt, pool2);
    double e = test_exp2(kt);
    test_determinism(kt);
    printf("%-7s %d attention cases, matmul, softmax, determinism; exp2 max rel err %.3g\n", kt->name, cases + 14, e);
  }
  if (failures) {
    printf("%d FAILURES\n", failures);
    return 1;
  }
  printf("all kernel tests passed\n");
  return 0;
}
