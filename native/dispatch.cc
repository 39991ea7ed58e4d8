// The one place that knows about CPUs: picks the kernel table at run time.
// x86-64: CPUID feature bits AND the OS saving the wide registers (XGETBV), as aklomp/base64's
// codec_choose.c does. AVX2 requires FMA too; AVX-512 requires F+BW+VL+DQ and opmask/ZMM state.
// SIMD_ATTENTION_ISA (read by the JS loader) forces one of the ISAs reported supported.
#include <cstring>

#include "include/attention_kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#if defined(_MSC_VER)
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#endif

namespace sa {

#if defined(__x86_64__) || defined(_M_X64)
namespace {
struct X86Features {
  bool avx2_fma = false;
  bool avx512 = false;
  bool amd_zen5_or_later = false;  // AMD family 1Ah or later
};

void cpuid(unsigned leaf, unsigned sub, unsigned r[4]) {
#if defined(_MSC_VER)
  int regs[4];
  __cpuidex(regs, (int)leaf, (int)sub);
  for (int i = 0; i < 4; ++i) r[i] = (unsigned)regs[i];
#else
  __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
#endif
}

unsigned long long xgetbv0() {
#if defined(_MSC_VER)
  return _xgetbv(0);
#else
  unsigned eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return ((unsigned long long)edx << 32) | eax;
#endif
}

X86Features detect() {
  X86Features f;
  unsigned r[4];
  cpuid(0, 0, r);
  const unsigned max_leaf = r[0];
  const bool amd = r[1] == 0x68747541u && r[3] == 0x69746e65u && r[2] == 0x444d4163u;  // "AuthenticAMD"
  if (max_leaf < 1) return f;
  cpuid(1, 0, r);
  const unsigned base_family = (r[0] >> 8) & 0xf;
  const unsigned family = base_family == 0xf ? base_family + ((r[0] >> 20) & 0xff) : base_family;
  f.amd_zen5_or_later = amd && family >= 0x1a;
  if (max_leaf < 7) return f;
  const bool osxsave = (r[2] >> 27) & 1;
  const bool avx = (r[2] >> 28) & 1;
  const bool fma = (r[2] >> 12) & 1;
  if (!osxsave || !avx) return f;
  const unsigned long long xcr0 = xgetbv0();
  const bool ymm_state = (xcr0 & 0x6) == 0x6;            // SSE + AVX state
  const bool zmm_state = (xcr0 & 0xe6) == 0xe6;          // + opmask, ZMM_Hi256, Hi16_ZMM
  cpuid(7, 0, r);
  const bool avx2 = (r[1] >> 5) & 1;
  const bool avx512f = (r[1] >> 16) & 1;
  const bool avx512dq = (r[1] >> 17) & 1;
  const bool avx512bw = (r[1] >> 30) & 1;
  const bool avx512vl = (r[1] >> 31) & 1;
  f.avx2_fma = ymm_state && avx2 && fma;
  f.avx512 = f.avx2_fma && zmm_state && avx512f && avx512dq && avx512bw && avx512vl;
  return f;
}

const X86Features& features() {
  static const X86Features f = detect();
  return f;
}
}  // namespace
#endif

// Decoding streams K and V from memory once. Towards L2 (prefetcht1) suits the Intel AVX-512 and
// AMD Zen 3 hosts this was tuned on (non-temporal prefetches halved the Intel host's decoding);
// on AMD Zen 5 prefetchnta read faster, one thread, K and V of 128 MiB, paired runs: +8-9% on
// avx512, +10-17% on avx2, +4% on scalar. Other CPUs keep the measured default.
bool decode_prefetch_nta() {
#if defined(__x86_64__) || defined(_M_X64)
  return features().amd_zen5_or_later;
#else
  return false;
#endif
}

int supported_isas(const char** out, int max) {
  int n = 0;
  auto add = [&](const char* s) {
    if (n < max) out[n] = s;
    ++n;
  };
#if defined(__x86_64__) || defined(_M_X64)
  if (features().avx512) add("avx512");
  if (features().avx2_fma) add("avx2");
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
  add("neon");
#endif
  add("scalar");
  return n < max ? n : max;
}

const char* best_isa() {
  const char* isas[8];
  supported_isas(isas, 8);
  return isas[0];
}

const KernelTable* kernels_for(const char* isa) {
  if (!isa || !*isa) isa = best_isa();
  if (!strcmp(isa, "scalar") || !strcmp(isa, "generic")) return kernels_generic();
#if defined(__x86_64__) || defined(_M_X64)
  if (!strcmp(isa, "avx512")) return features().avx512 ? kernels_avx512() : nullptr;
  if (!strcmp(isa, "avx2")) return features().avx2_fma ? kernels_avx2() : nullptr;
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
  if (!strcmp(isa, "neon")) return kernels_neon();
#endif
  return nullptr;
}

}  // namespace sa
