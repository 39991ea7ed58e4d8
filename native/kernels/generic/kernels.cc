// Scalar ("generic") kernels: baseline flags, one float per "vector". The fallback for every
// CPU, and the reference layout the SIMD paths mirror.
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "../../include/attention_kernels.h"

namespace sa {
namespace isa_generic {

#include "exp2_scalar.h"

// Vector traits every ISA provides (this one with W = 1):
//   zero set1 load store load_partial store_partial fmadd add sub mul max hsum hmax
//   hsums(a): lane i = hsum(a[i]) for W vectors a[0..W)
//   hide_lanes_below(v, n): lanes [0, n) := -inf      ninf_to_zero(v): -inf lanes := 0
//   exp2(t): 2^t; t < -126 gives 0 (no denormals), -inf gives 0, NaN stays NaN
struct V {
  using T = float;
  static constexpr int W = 1;
  static inline T zero() { return 0.0f; }
  static inline T set1(float x) { return x; }
  static inline T load(const float* p) { return *p; }
  static inline void store(float* p, T v) { *p = v; }
  static inline T load_partial(const float* p, int n) { return n > 0 ? *p : 0.0f; }
  static inline void store_partial(float* p, T v, int n) { if (n > 0) *p = v; }
  static inline T fmadd(T a, T b, T c) { return a * b + c; }
  static inline T add(T a, T b) { return a + b; }
  static inline T sub(T a, T b) { return a - b; }
  static inline T mul(T a, T b) { return a * b; }
  // NaN-propagating in the second operand, like x86 maxps
  static inline T max(T a, T b) { return a > b ? a : b; }
  static inline float hsum(T v) { return v; }
  static inline T hsums(const T* a) { return a[0]; }
  static inline float hmax(T v) { return v; }
  static inline T hide_lanes_below(T v, int n) { return n > 0 ? -__builtin_inff() : v; }
  static inline T ninf_to_zero(T v) { return v == -__builtin_inff() ? 0.0f : v; }
  static inline T exp2(T t) { return exp2_scalar(t); }
};

constexpr int kAttMR = 4;
constexpr int kAttNR = 4;
constexpr int kMmMR = 4;
constexpr int kMmNV = 4;
constexpr int kProbeAcc = 8;
static const char* const kIsaName = "scalar";

#include "../impl.h"

}  // namespace isa_generic

const KernelTable* kernels_generic() { return &isa_generic::kTable; }

}  // namespace sa
