// The multi-head attention block, Node-free: weights packed once for the ISA's matmul,
// fused QKV projection, KV-cache append, attention, output projection.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "include/attention_kernels.h"

namespace sa {

struct MultiHeadConfig {
  int64_t embed_dim, num_heads, num_kv_heads, head_dim, kv_dim;
  const float *wq, *wk, *wv, *wo;          // [E,E], [kv,E], [kv,E], [E,E] (nn.Linear [out, in])
  const float *bq, *bk, *bv, *bo;          // optional
};

struct MultiHeadForward {
  const float* x;   // [B, Sq, E]
  const float* kv;  // [B, Skv, E]
  bool self_attention;  // kv is x
  int64_t batch, seq_q, seq_kv;
  bool causal;
  int mask_kind;
  const void* mask;
  int64_t m_sb, m_sh, m_sq, m_sk;
  const int32_t* key_lengths;
  // optional cache [B, max_length, Hkv, Dh]
  float* cache_k;
  float* cache_v;
  int64_t cache_max, cache_len;  // cache_k == nullptr: no cache
  float* out;  // [B, Sq, E]
};

class MultiHeadWeights {
 public:
  // throws std::bad_alloc on allocation failure
  MultiHeadWeights(const KernelTable* kt, const MultiHeadConfig& cfg);
  ~MultiHeadWeights();
  MultiHeadWeights(const MultiHeadWeights&) = delete;
  MultiHeadWeights& operator=(const MultiHeadWeights&) = delete;
  // returns a Status; throws std::bad_alloc on allocation failure
  int forward(const MultiHeadForward& f, Parallel& par) const;
  int64_t bytes() const { return bytes_; }
  const MultiHeadConfig& config() const { return cfg_; }

 private:
  const KernelTable* kt_;
  MultiHeadConfig cfg_;  // weight pointers cleared after packing
  float* packed_ = nullptr;
  PackedB q_{}, kv_{}, qkv_{}, o_{};
  bool fused_ = false;
  std::vector<float> bias_qkv_, bias_o_;
  bool has_bias_qkv_ = false, has_bias_o_ = false;
  int64_t bytes_ = 0;
};

}  // namespace sa
