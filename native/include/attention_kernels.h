// Plain C++ signatures of the simd-attention kernels: pointers, sizes, element strides.
// Nothing here knows about Node; the kernels can be tested and benchmarked on their own
// (native/test/kernel_test.cc). Every ISA (generic, avx2, avx512, neon) fills one KernelTable.
#pragma once
#include <cstddef>
#include <cstdint>

namespace sa {

// Status codes returned by the kernels (never exceptions: the ISA translation units are kept
// free of shared inline/template code so that nothing compiled with wide-vector flags can be
// picked by the linker for code that runs on older CPUs).
enum Status : int { kOk = 0, kErrAlloc = 1, kErrArgs = 2 };

// Runs fn(ctx, task, worker) for task in [0, n), spread over worker threads. Implemented by the
// thread pool (thread_pool.cc) or serially (tests). `worker` is in [0, workers()).
class Parallel {
 public:
  virtual ~Parallel() = default;
  virtual int workers() const = 0;
  virtual void run(int64_t n, void (*fn)(void* ctx, int64_t task, int worker), void* ctx) = 0;
};

class SerialParallel final : public Parallel {
 public:
  int workers() const override { return 1; }
  void run(int64_t n, void (*fn)(void*, int64_t, int), void* ctx) override {
    for (int64_t t = 0; t < n; ++t) fn(ctx, t, 0);
  }
};

enum MaskKind : int { kMaskNone = 0, kMaskAdditive = 1, kMaskBoolean = 2 };

struct AttnParams {
  const float* q;
  const float* k;
  const float* v;
  float* out;
  float* weights;  // optional: P [B, Hq, Sq, Sk] contiguous
  int64_t batch, heads, kv_heads, seq_q, seq_k, head_dim, head_dim_v;
  // element strides of [B, H, S, D] tensors (last axis contiguous)
  int64_t q_sb, q_sh, q_ss;
  int64_t k_sb, k_sh, k_ss;
  int64_t v_sb, v_sh, v_ss;
  int64_t o_sb, o_sh, o_ss;
  float scale;
  bool causal;  // bottom-right aligned: query i sees key j iff j <= i + (Sk - Sq)
  int mask_kind;
  const void* mask;  // float (additive) or uint8 (boolean; 0 hides)
  int64_t m_sb, m_sh, m_sq, m_sk;  // mask strides over [B, Hq, Sq, Sk]; 0 = broadcast
  const int32_t* key_lengths;      // optional [B], each in [0, Sk]
};

// C[b] = A[b] · B[b] (or · B[b]ᵀ when transpose_b) + bias; row-major contiguous matrices.
struct MatmulParams {
  const float* a;
  const float* b;
  float* c;
  const float* bias;  // optional [n]
  int64_t batch, m, n, k;
  int64_t stride_a, stride_b;  // element offsets between matrices (0 = broadcast)
  int64_t lda, ldc;            // row strides of A and C (k and n for contiguous)
  bool transpose_b;
  // Optional (0: off): C stored as column blocks of c_block columns, block i at
  // c + i * c_block_stride as its own [m][ldc] matrix (the multi-head block writes one attention
  // head per block). c_block must be a multiple of the ISA's panel width; batch must be 1.
  int64_t c_block = 0, c_block_stride = 0;
};

struct SoftmaxParams {
  const float* x;
  float* out;
  int64_t rows, cols;
  float scale;
};

// B packed into column panels for the ISA's matmul micro-kernel (ISA specific layout).
struct PackedB {
  float* data;
  int64_t k, n;
  int64_t panel;  // columns per panel
};

struct KernelTable {
  const char* name;
  int (*attention)(const AttnParams& p, Parallel& par);
  int (*matmul)(const MatmulParams& p, Parallel& par);
  // matmul against a B packed once (multi-head weights); p.b, p.stride_b, p.transpose_b ignored
  int (*matmul_packed)(const MatmulParams& p, const PackedB& b, Parallel& par);
  // floats needed to pack a k x n B for this ISA
  int64_t (*packed_b_floats)(int64_t k, int64_t n);
  // packs B ([k, n], or [n, k] when transpose_b, row stride ldb) into dst
  void (*pack_b)(const float* b, int64_t ldb, bool transpose_b, int64_t k, int64_t n, float* dst, PackedB* out);
  int (*softmax)(const SoftmaxParams& p, Parallel& par);
  // exp2 of n floats with the ISA's vectorised exp (for tests: its error is measured)
  void (*exp2_n)(const float* x, float* y, int64_t n);
  // FMA throughput probe: runs `iters` rounds of independent FMA chains; returns flops done
  double (*fma_probe)(int64_t iters);
  int lanes;  // floats per vector
};

// Whether the decoding kernels prefetch K and V rows non-temporally (prefetchnta) rather than
// towards L2: dispatch.cc decides by the CPU, read once by each kernel unit at load.
bool decode_prefetch_nta();

const KernelTable* kernels_generic();
#if defined(__x86_64__) || defined(_M_X64)
const KernelTable* kernels_avx2();
const KernelTable* kernels_avx512();
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
const KernelTable* kernels_neon();
#endif

// dispatch.cc: ISAs this CPU and OS can run, best first ("avx512", "avx2", "neon", "scalar").
int supported_isas(const char** out, int max);
// the table for an ISA name ("scalar"/"generic", "avx2", ...), or nullptr if unknown/unsupported
const KernelTable* kernels_for(const char* isa);
const char* best_isa();

}  // namespace sa
