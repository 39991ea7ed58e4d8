// @ts-nocheck: AssemblyScript source (f32x4, i32, f32 are asc builtins), compiled by asc, not tsc
/**
 * WASM peak probe (f32x4.mul + f32x4.add, plain SIMD128): long chains of independent vector operations whose results are
 * kept, so the runtime's sustained f32x4 throughput can be measured. Compiled by bench/limits.ts
 * with node_modules/.bin/asc into .tmp/bench/ at bench start (not shipped).
 * flops per loop iteration and accumulator: 8 (4 lanes x (mul + add)).
 */
/** 8 independent f32x4 accumulators; a = a*m + c as two instructions */
export function muladd8(iters: i32, mul: f32, add: f32): f32 {
  const m = f32x4.splat(mul);
  const c = f32x4.splat(add);
  let a0 = f32x4.splat(<f32>0 * 0.001);
  let a1 = f32x4.splat(<f32>1 * 0.001);
  let a2 = f32x4.splat(<f32>2 * 0.001);
  let a3 = f32x4.splat(<f32>3 * 0.001);
  let a4 = f32x4.splat(<f32>4 * 0.001);
  let a5 = f32x4.splat(<f32>5 * 0.001);
  let a6 = f32x4.splat(<f32>6 * 0.001);
  let a7 = f32x4.splat(<f32>7 * 0.001);
  for (let i = 0; i < iters; i++) {
    a0 = f32x4.add(f32x4.mul(a0, m), c);
    a1 = f32x4.add(f32x4.mul(a1, m), c);
    a2 = f32x4.add(f32x4.mul(a2, m), c);
    a3 = f32x4.add(f32x4.mul(a3, m), c);
    a4 = f32x4.add(f32x4.mul(a4, m), c);
    a5 = f32x4.add(f32x4.mul(a5, m), c);
    a6 = f32x4.add(f32x4.mul(a6, m), c);
    a7 = f32x4.add(f32x4.mul(a7, m), c);
  }
  let s = a0;
  s = f32x4.add(s, a1);
  s = f32x4.add(s, a2);
  s = f32x4.add(s, a3);
  s = f32x4.add(s, a4);
  s = f32x4.add(s, a5);
  s = f32x4.add(s, a6);
  s = f32x4.add(s, a7);
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1) + f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3);
}

/** 12 independent f32x4 accumulators; a = a*m + c as two instructions */
export function muladd12(iters: i32, mul: f32, add: f32): f32 {
  const m = f32x4.splat(mul);
  const c = f32x4.splat(add);
  let a0 = f32x4.splat(<f32>0 * 0.001);
  let a1 = f32x4.splat(<f32>1 * 0.001);
  let a2 = f32x4.splat(<f32>2 * 0.001);
  let a3 = f32x4.splat(<f32>3 * 0.001);
  let a4 = f32x4.splat(<f32>4 * 0.001);
  let a5 = f32x4.splat(<f32>5 * 0.001);
  let a6 = f32x4.splat(<f32>6 * 0.001);
  let a7 = f32x4.splat(<f32>7 * 0.001);
  let a8 = f32x4.splat(<f32>8 * 0.001);
  let a9 = f32x4.splat(<f32>9 * 0.001);
  let a10 = f32x4.splat(<f32>10 * 0.001);
  let a11 = f32x4.splat(<f32>11 * 0.001);
  for (let i = 0; i < iters; i++) {
    a0 = f32x4.add(f32x4.mul(a0, m), c);
    a1 = f32x4.add(f32x4.mul(a1, m), c);
    a2 = f32x4.add(f32x4.mul(a2, m), c);
    a3 = f32x4.add(f32x4.mul(a3, m), c);
    a4 = f32x4.add(f32x4.mul(a4, m), c);
    a5 = f32x4.add(f32x4.mul(a5, m), c);
    a6 = f32x4.add(f32x4.mul(a6, m), c);
    a7 = f32x4.add(f32x4.mul(a7, m), c);
    a8 = f32x4.add(f32x4.mul(a8, m), c);
    a9 = f32x4.add(f32x4.mul(a9, m), c);
    a10 = f32x4.add(f32x4.mul(a10, m), c);
    a11 = f32x4.add(f32x4.mul(a11, m), c);
  }
  let s = a0;
  s = f32x4.add(s, a1);
  s = f32x4.add(s, a2);
  s = f32x4.add(s, a3);
  s = f32x4.add(s, a4);
  s = f32x4.add(s, a5);
  s = f32x4.add(s, a6);
  s = f32x4.add(s, a7);
  s = f32x4.add(s, a8);
  s = f32x4.add(s, a9);
  s = f32x4.add(s, a10);
  s = f32x4.add(s, a11);
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1) + f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3);
}
