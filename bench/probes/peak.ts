// @ts-nocheck: AssemblyScript source (f32x4, v128, i32, f32 are asc builtins), compiled by asc, not tsc
/**
 * WASM peak probe: long chains of independent f32x4 multiply-adds whose results are kept, so the
 * runtime's sustained vector throughput can be measured. One source, two builds (bench/limits.ts):
 * plain SIMD128 (mul then add, two instructions) and relaxed SIMD (`--enable relaxed-simd`, where
 * ASC_FEATURE_RELAXED_SIMD selects one relaxed_madd). 8 flops per iteration and accumulator.
 */

@inline function step(a: v128, m: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, m, c);
  return f32x4.add(f32x4.mul(a, m), c);
}

@inline function sum4(s: v128): f32 {
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1) + f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3);
}

/** 8 independent accumulators: enough to cover the latency on most cores */
export function acc8(iters: i32, mul: f32, add: f32): f32 {
  const m = f32x4.splat(mul);
  const c = f32x4.splat(add);
  let a0 = f32x4.splat(0.000), a1 = f32x4.splat(0.001), a2 = f32x4.splat(0.002), a3 = f32x4.splat(0.003);
  let a4 = f32x4.splat(0.004), a5 = f32x4.splat(0.005), a6 = f32x4.splat(0.006), a7 = f32x4.splat(0.007);
  for (let i = 0; i < iters; i++) {
    a0 = step(a0, m, c); a1 = step(a1, m, c); a2 = step(a2, m, c); a3 = step(a3, m, c);
    a4 = step(a4, m, c); a5 = step(a5, m, c); a6 = step(a6, m, c); a7 = step(a7, m, c);
  }
  return sum4(f32x4.add(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)), f32x4.add(f32x4.add(a4, a5), f32x4.add(a6, a7))));
}

/** 12 independent accumulators: for cores whose latency × throughput exceeds 8 */
export function acc12(iters: i32, mul: f32, add: f32): f32 {
  const m = f32x4.splat(mul);
  const c = f32x4.splat(add);
  let a0 = f32x4.splat(0.000), a1 = f32x4.splat(0.001), a2 = f32x4.splat(0.002), a3 = f32x4.splat(0.003);
  let a4 = f32x4.splat(0.004), a5 = f32x4.splat(0.005), a6 = f32x4.splat(0.006), a7 = f32x4.splat(0.007);
  let a8 = f32x4.splat(0.008), a9 = f32x4.splat(0.009), a10 = f32x4.splat(0.010), a11 = f32x4.splat(0.011);
  for (let i = 0; i < iters; i++) {
    a0 = step(a0, m, c); a1 = step(a1, m, c); a2 = step(a2, m, c); a3 = step(a3, m, c);
    a4 = step(a4, m, c); a5 = step(a5, m, c); a6 = step(a6, m, c); a7 = step(a7, m, c);
    a8 = step(a8, m, c); a9 = step(a9, m, c); a10 = step(a10, m, c); a11 = step(a11, m, c);
  }
  const s = f32x4.add(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)), f32x4.add(f32x4.add(a4, a5), f32x4.add(a6, a7)));
  return sum4(f32x4.add(s, f32x4.add(f32x4.add(a8, a9), f32x4.add(a10, a11))));
}
