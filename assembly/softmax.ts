// Row softmax: out[r, :] = softmax(scale * x[r, :]), max subtracted first. A row whose every
// entry of scale * x is -Infinity gives zeros; NaN propagates to its row. out may alias x.

import { exp2x4, exp2s, hsum, hpmax, LOG2E } from './simd/math';

export function softmax(out: usize, x: usize, rows: i32, cols: i32, scale: f32): void {
  const s2 = scale * LOG2E;
  const vs = f32x4.splat(s2);
  // scale * x is never formed: times log2(e) it overflows for |x| near FLT_MAX, and a row of
  // such values (a torch.finfo(float32).min mask) came out as zeros instead of uniform weights.
  // The exponent is (x - m) * scale * log2(e), m the row's max (its min when scale < 0).
  const sg: f32 = s2 < 0 ? -1 : 1;
  const vsg = f32x4.splat(sg);
  const c4 = cols & ~3;
  for (let r = 0; r < rows; r++) {
    const xr = x + (<usize>r) * (<usize>cols) * 4;
    const orow = out + (<usize>r) * (<usize>cols) * 4;
    // 1. max of sg * x. pmax (one maxps) may drop a NaN; the NaN still reaches the sum through
    // exp2 and makes the whole row NaN, as the reference's is
    let mv = f32x4.splat(-Infinity);
    let j = 0;
    for (; j < c4; j += 4) mv = f32x4.pmax(mv, f32x4.mul(v128.load(xr + (<usize>j) * 4), vsg));
    let m = hpmax(mv);
    for (; j < cols; j++) {
      const y = load<f32>(xr + (<usize>j) * 4) * sg;
      if (m < y) m = y;
    }
    // m = -Infinity (every sg * x -Infinity, or NaN) or scale 0: m is taken as 0, so that
    // (x - 0) * s2, which is x * s2 itself, gives the zeros, the NaN or the equal weights
    const mu: f32 = m == -Infinity || s2 == 0 ? 0 : m * sg;
    const vm = f32x4.splat(mu);
    // 2. exponentials and their sum, in blocks of 256 floats each summed from zero (one running
    // sum over a long row rounded every term at the size of the whole sum: 5.9e-5 relative at a
    // million columns)
    let total = f32x4.splat(0);
    for (let j0 = 0; j0 < c4; j0 += 256) {
      const j1 = min<i32>(c4, j0 + 256);
      let sv = f32x4.splat(0);
      for (j = j0; j < j1; j += 4) {
        const e = exp2x4(f32x4.mul(f32x4.sub(v128.load(xr + (<usize>j) * 4), vm), vs));
        v128.store(orow + (<usize>j) * 4, e);
        sv = f32x4.add(sv, e);
      }
      total = f32x4.add(total, sv);
    }
    j = c4;
    let sum = hsum(total);
    for (; j < cols; j++) {
      const e = exp2s((load<f32>(xr + (<usize>j) * 4) - mu) * s2);
      store<f32>(orow + (<usize>j) * 4, e);
      sum += e;
    }
    // 3. normalise (a row of -Infinity has sum 0: zeros stay zeros)
    const inv: f32 = sum == 0 ? 0 : 1 / sum;
    const vi = f32x4.splat(inv);
    j = 0;
    for (; j < c4; j += 4) v128.store(orow + (<usize>j) * 4, f32x4.mul(v128.load(orow + (<usize>j) * 4), vi));
    for (; j < cols; j++) store<f32>(orow + (<usize>j) * 4, load<f32>(orow + (<usize>j) * 4) * inv);
  }
}

/** 2^x for n floats: the kernels' exp2, exported so the tests can measure its error */
export function exp2Array(out: usize, x: usize, n: i32): void {
  let j = 0;
  for (; j + 4 <= n; j += 4) v128.store(out + (<usize>j) * 4, exp2x4(v128.load(x + (<usize>j) * 4)));
  for (; j < n; j++) store<f32>(out + (<usize>j) * 4, exp2s(load<f32>(x + (<usize>j) * 4)));
}
