#include "multihead.h"

#include <cstdlib>
#include <cstring>
#include <new>

namespace sa {

namespace {
// An uninitialised, 64-byte aligned float buffer (every element is written before it is read:
// std::vector's zero fill of a few MB cost a noticeable share of a forward pass).
struct FloatBuf {
  float* p = nullptr;
  FloatBuf() = default;
  FloatBuf(const FloatBuf&) = delete;
  FloatBuf& operator=(const FloatBuf&) = delete;
  ~FloatBuf() { free(p); }
  void resize(size_t n) {
    free(p);
    p = nullptr;
    void* mem = nullptr;
    size_t bytes = ((n ? n : 1) * sizeof(float) + 63) & ~(size_t)63;
    if (posix_memalign(&mem, 64, bytes) != 0 || !mem) throw std::bad_alloc();
    p = (float*)mem;
  }
  float* data() const { return p; }
};
}  // namespace

MultiHeadWeights::MultiHeadWeights(const KernelTable* kt, const MultiHeadConfig& cfg) : kt_(kt), cfg_(cfg) {
  const int64_t E = cfg.embed_dim, KV = cfg.kv_dim;
  const int64_t fq = kt->packed_b_floats(E, E), fkv = kt->packed_b_floats(E, 2 * KV), fo = kt->packed_b_floats(E, E);
  // Whatever may throw (the vectors) first, the packed block last: a constructor that throws runs
  // no destructor, so a bad_alloc after the block was taken leaked it.
  // Wk and Wv stacked: [2*KV, E]
  std::vector<float> wkv((size_t)(2 * KV * E));
  memcpy(wkv.data(), cfg.wk, sizeof(float) * (size_t)(KV * E));
  memcpy(wkv.data() + KV * E, cfg.wv, sizeof(float) * (size_t)(KV * E));
  has_bias_qkv_ = cfg.bq || cfg.bk || cfg.bv;
  if (has_bias_qkv_) {
    bias_qkv_.assign((size_t)(E + 2 * KV), 0.0f);
    if (cfg.bq) memcpy(bias_qkv_.data(), cfg.bq, sizeof(float) * (size_t)E);
    if (cfg.bk) memcpy(bias_qkv_.data() + E, cfg.bk, sizeof(float) * (size_t)KV);
    if (cfg.bv) memcpy(bias_qkv_.data() + E + KV, cfg.bv, sizeof(float) * (size_t)KV);
  }
  has_bias_o_ = cfg.bo != nullptr;
  if (has_bias_o_) bias_o_.assign(cfg.bo, cfg.bo + E);
  void* mem = nullptr;
  const size_t bytes = (size_t)(fq + fkv + fo) * sizeof(float);
  if (posix_memalign(&mem, 64, bytes ? bytes : 64) != 0 || !mem) throw std::bad_alloc();
  packed_ = (float*)mem;
  bytes_ = (int64_t)bytes + (int64_t)(bias_qkv_.size() + bias_o_.size()) * 4;
  kt->pack_b(cfg.wq, E, true, E, E, packed_, &q_);
  kt->pack_b(wkv.data(), E, true, E, 2 * KV, packed_ + fq, &kv_);
  kt->pack_b(cfg.wo, E, true, E, E, packed_ + fq + fkv, &o_);
  // With E a multiple of the panel width, the Q panels followed by the KV panels are exactly
  // the packed [Wq; Wk; Wv]: one fused QKV matmul for self-attention.
  fused_ = E % q_.panel == 0;
  if (fused_) {
    qkv_.data = packed_;
    qkv_.k = E;
    qkv_.n = E + 2 * KV;
    qkv_.panel = q_.panel;
  }
  cfg_.wq = cfg_.wk = cfg_.wv = cfg_.wo = nullptr;
  cfg_.bq = cfg_.bk = cfg_.bv = cfg_.bo = nullptr;
}

MultiHeadWeights::~MultiHeadWeights() { free(packed_); }

int MultiHeadWeights::forward(const MultiHeadForward& f, Parallel& par) const {
  const int64_t E = cfg_.embed_dim, KV = cfg_.kv_dim, Dh = cfg_.head_dim;
  const int64_t B = f.batch, Sq = f.seq_q, Skv = f.seq_kv;
  const float* bqkv = has_bias_qkv_ ? bias_qkv_.data() : nullptr;
  FloatBuf qbuf, kvbuf;
  const float *qp, *kp, *vp;
  int64_t q_row, kv_row;
  int st;
  int64_t head_stride = Dh;  // between heads of Q, K and V
  if (f.self_attention && fused_ && Sq == Skv) {
    const int64_t N = E + 2 * KV, rows = B * Sq;
    // Without a cache and with heads a whole number of panels wide, the fused projection writes
    // each head's Q, K and V as its own [B·S][Dh] matrix, which attention then reads
    // contiguously rather than in rows 9 KiB apart (E 768): mha768 +3% on two threads in paired
    // runs here, the same on one, and bit-identical results.
    const bool head_major = !f.cache_k && Dh % qkv_.panel == 0;
    qbuf.resize((size_t)(rows * N));
    MatmulParams mp{f.x, nullptr, qbuf.data(), bqkv, 1, rows, N, E, 0, 0, E, head_major ? Dh : N, true};
    if (head_major) {
      mp.c_block = Dh;
      mp.c_block_stride = rows * Dh;
    }
    if ((st = kt_->matmul_packed(mp, qkv_, par)) != kOk) return st;
    // K follows the E columns of Q, and V the KV of K: a column takes `rows` floats in the head
    // blocks, one float along a row otherwise
    const int64_t col = head_major ? rows : 1;
    qp = qbuf.data();
    kp = qp + E * col;
    vp = kp + KV * col;
    q_row = kv_row = head_major ? Dh : N;
    if (head_major) head_stride = rows * Dh;
  } else {
    qbuf.resize((size_t)(B * Sq * E));
    kvbuf.resize((size_t)(B * Skv * 2 * KV));
    MatmulParams mq{f.x, nullptr, qbuf.data(), bqkv, 1, B * Sq, E, E, 0, 0, E, E, true};
    if ((st = kt_->matmul_packed(mq, q_, par)) != kOk) return st;
    if (B * Skv > 0) {
      MatmulParams mkv{f.kv, nullptr, kvbuf.data(), bqkv ? bqkv + E : nullptr, 1, B * Skv, 2 * KV, E, 0, 0, E, 2 * KV, true};
      if ((st = kt_->matmul_packed(mkv, kv_, par)) != kOk) return st;
    }
    qp = qbuf.data();
    kp = kvbuf.data();
    vp = kvbuf.data() + KV;
    q_row = E;
    kv_row = 2 * KV;
  }
  AttnParams ap{};
  ap.q = qp;
  ap.batch = B;
  ap.heads = cfg_.num_heads;
  ap.kv_heads = cfg_.num_kv_heads;
  ap.seq_q = Sq;
  ap.head_dim = ap.head_dim_v = Dh;
  ap.q_sb = Sq * q_row; ap.q_sh = head_stride; ap.q_ss = q_row;
  if (f.cache_k) {
    // append the new keys/values at cache_len, then attend over the whole cache
    for (int64_t b = 0; b < B; ++b)
      for (int64_t s = 0; s < Skv; ++s) {
        float* dk = f.cache_k + (b * f.cache_max + f.cache_len + s) * KV;
        float* dv = f.cache_v + (b * f.cache_max + f.cache_len + s) * KV;
        memcpy(dk, kp + (b * Skv + s) * kv_row, sizeof(float) * (size_t)KV);
        memcpy(dv, vp + (b * Skv + s) * kv_row, sizeof(float) * (size_t)KV);
      }
    ap.k = f.cache_k;
    ap.v = f.cache_v;
    ap.seq_k = f.cache_len + Skv;
    ap.k_sb = ap.v_sb = f.cache_max * KV;
    ap.k_ss = ap.v_ss = KV;
  } else {
    ap.k = kp;
    ap.v = vp;
    ap.seq_k = Skv;
    ap.k_sb = ap.v_sb = Skv * kv_row;
    ap.k_ss = ap.v_ss = kv_row;
  }
  ap.k_sh = ap.v_sh = f.cache_k ? Dh : head_stride;
  FloatBuf abuf;
  abuf.resize((size_t)(B * Sq * E));
  ap.out = abuf.data();
  ap.o_sb = Sq * E; ap.o_sh = Dh; ap.o_ss = E;
  ap.scale = 1.0f / __builtin_sqrtf((float)Dh);
  ap.causal = f.causal;
  ap.mask_kind = f.mask_kind;
  ap.mask = f.mask;
  ap.m_sb = f.m_sb; ap.m_sh = f.m_sh; ap.m_sq = f.m_sq; ap.m_sk = f.m_sk;
  ap.key_lengths = f.key_lengths;
  if ((st = kt_->attention(ap, par)) != kOk) return st;
  MatmulParams mo{abuf.data(), nullptr, f.out, has_bias_o_ ? bias_o_.data() : nullptr, 1, B * Sq, E, E, 0, 0, E, E, true};
  return kt_->matmul_packed(mo, o_, par);
}

}  // namespace sa
