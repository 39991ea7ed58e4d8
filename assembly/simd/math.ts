// @inline SIMD helpers shared by the kernels. One source, two builds: when the module is
// compiled with `--enable relaxed-simd`, ASC_FEATURE_RELAXED_SIMD is true and fmadd lowers to
// f32x4.relaxed_madd (a fused multiply-add where the CPU has one); otherwise mul + add.

/** a * b + c, lane-wise */
// @ts-ignore: decorator
@inline export function fmadd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    return f32x4.relaxed_madd(a, b, c);
  } else {
    return f32x4.add(f32x4.mul(a, b), c);
  }
}

// Coefficients of 2^f on [-0.5, 0.5]: a degree-5 polynomial fitted for minimax relative error
// (1.9e-7 evaluated in float32 by Horner, about 1.6 float32 ulps; the test measures the
// end-to-end error of exp2 against Math.pow).
// @ts-ignore: decorator
@inline const C1: f32 = 0.6931469775965879;
// @ts-ignore: decorator
@inline const C2: f32 = 0.24022242081842388;
// @ts-ignore: decorator
@inline const C3: f32 = 0.05550733745646184;
// @ts-ignore: decorator
@inline const C4: f32 = 0.009671512862235566;
// @ts-ignore: decorator
@inline const C5: f32 = 0.0013264727080124575;

/**
 * 2^x lane-wise. x <= -127 (and -Infinity) gives exactly 0; NaN gives NaN; x is clamped at
 * 127 above (the kernels only pass x <= 0).
 */
// @ts-ignore: decorator
@inline export function exp2x4(x: v128): v128 {
  // pmax(a, b) = a < b ? b : a, so a NaN in x survives (unlike a clamp through max).
  x = f32x4.pmax(x, f32x4.splat(-127.0));
  x = f32x4.pmin(x, f32x4.splat(127.0));
  // round to nearest with the 1.5 * 2^23 trick: t = x + M holds round(x) in its low mantissa
  // bits, so n = t - M, and 2^n is (bits(t) - bits(M) + 127) << 23 (cheaper than nearest +
  // trunc_sat, whose saturating lowering costs several instructions). A NaN stays NaN: p is NaN.
  const t = f32x4.add(x, f32x4.splat(12582912.0));
  const n = f32x4.sub(t, f32x4.splat(12582912.0));
  const f = f32x4.sub(x, n);
  let p = fmadd(f32x4.splat(C5), f, f32x4.splat(C4));
  p = fmadd(p, f, f32x4.splat(C3));
  p = fmadd(p, f, f32x4.splat(C2));
  p = fmadd(p, f, f32x4.splat(C1));
  p = fmadd(p, f, f32x4.splat(1.0));
  // 2^n through the exponent bits: n = -127 gives the bit pattern 0, i.e. +0.0
  const e = i32x4.shl(i32x4.add(t, i32x4.splat(127 - 0x4b400000)), 23);
  return f32x4.mul(p, e);
}

/** scalar 2^x through the vector path, so scalar tails round exactly like vector lanes */
// @ts-ignore: decorator
@inline export function exp2s(x: f32): f32 {
  return f32x4.extract_lane(exp2x4(f32x4.splat(x)), 0);
}

/** sum of the four lanes */
// @ts-ignore: decorator
@inline export function hsum(v: v128): f32 {
  const s = f32x4.add(v, i32x4.shuffle(v, v, 2, 3, 0, 1));
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1);
}

/**
 * max of the four lanes through pmax (a < b ? b : a: one maxps). A NaN lane may be dropped, so
 * callers must not rely on it: the attention kernel's NaN scores reach the row sum through exp.
 */
// @ts-ignore: decorator
@inline export function hpmax(v: v128): f32 {
  const s = f32x4.pmax(v, i32x4.shuffle(v, v, 2, 3, 0, 1));
  const a = f32x4.extract_lane(s, 0), b = f32x4.extract_lane(s, 1);
  return a < b ? b : a;
}

/** log2(e): scores are kept in base 2 so the kernels call exp2 */
// @ts-ignore: decorator
@inline export const LOG2E: f32 = 1.4426950408889634;

/**
 * An additive mask value in base-2 units, x * log2(e), with a finite x kept finite: below
 * -FLT_MAX / log2(e) (torch.finfo(float32).min, as Hugging Face models mask with) the product
 * would be -Infinity and hide its key outright, so that a row hidden by such values alone came
 * out as zeros, not as the reference's softmax over those (equal) finite scores. Infinities and
 * NaN pass through. (The native kernels' to_log2_units.)
 */
// @ts-ignore: decorator
@inline export function toLog2s(x: f32): f32 {
  const v = x * LOG2E;
  if (v - v != 0 && x - x == 0) return v > 0 ? f32.MAX_VALUE : -f32.MAX_VALUE;
  return v;
}

// @ts-ignore: decorator
@inline export function toLog2x4(x: v128): v128 {
  const v = f32x4.mul(x, f32x4.splat(LOG2E));
  const zero = f32x4.splat(0);
  const clamp = v128.and(f32x4.eq(f32x4.sub(x, x), zero), f32x4.ne(f32x4.sub(v, v), zero));
  const lim = f32x4.pmin(f32x4.pmax(v, f32x4.splat(-f32.MAX_VALUE)), f32x4.splat(f32.MAX_VALUE));
  return v128.bitselect(lim, v, clamp);
}
