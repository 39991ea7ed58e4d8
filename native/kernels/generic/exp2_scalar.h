// 2^t for one float: the scalar unit's exp2 (and, lane by lane, the test-only emulated 16-lane
// unit's). Included inside the including unit's namespace, as impl.h is, so no copy compiled for
// one unit can stand in for another's. t < -126 gives 0 (no denormals), -inf gives 0, NaN stays
// NaN, 2^0 is exactly 1. The polynomial is the AVX2 and NEON one, so those ISAs share its error
// profile.
static inline float exp2_scalar(float t) {
  if (t != t) return t;
  if (t < -126.0f) return 0.0f;
  const float n = __builtin_rintf(t);
  const float f = t - n;
  float p = 1.535336188319500e-4f;
  p = p * f + 1.339887440266574e-3f;
  p = p * f + 9.618437357674640e-3f;
  p = p * f + 5.550332471162809e-2f;
  p = p * f + 2.402264791363012e-1f;
  p = p * f + 6.931472028550421e-1f;
  p = p * f + 1.0f;
  return __builtin_ldexpf(p, (int)n);
}
