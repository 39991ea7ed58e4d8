// Register-blocked micro-kernels shared by matmul and attention.
//
// A packed panel holds 8 columns of B for every k: panel[kk * 8 + c] (floats). A 4x8 tile of
// C keeps 8 f32x4 accumulators in registers (x64 has 16 xmm registers: 8 accumulators, 2 panel
// vectors, one broadcast and one temporary), so each k step issues 2 panel loads, 4 broadcasts
// and 8 multiply-adds.

import { fmadd } from './math';

/**
 * C[4][8] (row stride ldc bytes) = init + A[4][K] (row stride lda bytes) * panel[K][8]
 * (row stride ldp bytes: 32 for a packed panel, or a plain row-major matrix's stride).
 * init: pointer to an 8-float row added to every row (a bias), or 0 for none.
 * accumulate: when true, C's current contents are added (init ignored): the K products are
 * summed from zero and the sum added to C at the end, so they are rounded at the size of their
 * own sum, not of C's (attention's P * V over a long row: C holds every earlier tile's sum).
 */
// @ts-ignore: decorator
@inline export function kernel4x8(
  a: usize, lda: usize, panel: usize, ldp: usize, K: i32, c: usize, ldc: usize, init: usize, accumulate: bool
): void {
  let c00: v128, c01: v128, c10: v128, c11: v128, c20: v128, c21: v128, c30: v128, c31: v128;
  if (init != 0 && !accumulate) {
    c00 = v128.load(init); c01 = v128.load(init, 16);
    c10 = c00; c11 = c01; c20 = c00; c21 = c01; c30 = c00; c31 = c01;
  } else {
    c00 = f32x4.splat(0); c01 = c00; c10 = c00; c11 = c00;
    c20 = c00; c21 = c00; c30 = c00; c31 = c00;
  }
  let a0 = a;
  const a1 = lda, a2 = lda << 1, a3 = lda * 3;
  let p = panel;
  // counted, not compared with an end address: one at the top of a 4 GiB memory wraps to 0
  for (let kk = 0; kk < K; kk++) {
    const b0 = v128.load(p);
    const b1 = v128.load(p, 16);
    let s = v128.load32_splat(a0);
    c00 = fmadd(s, b0, c00); c01 = fmadd(s, b1, c01);
    s = v128.load32_splat(a0 + a1);
    c10 = fmadd(s, b0, c10); c11 = fmadd(s, b1, c11);
    s = v128.load32_splat(a0 + a2);
    c20 = fmadd(s, b0, c20); c21 = fmadd(s, b1, c21);
    s = v128.load32_splat(a0 + a3);
    c30 = fmadd(s, b0, c30); c31 = fmadd(s, b1, c31);
    a0 += 4;
    p += ldp;
  }
  if (accumulate) {
    c00 = f32x4.add(v128.load(c), c00); c01 = f32x4.add(v128.load(c, 16), c01);
    c10 = f32x4.add(v128.load(c + ldc), c10); c11 = f32x4.add(v128.load(c + ldc, 16), c11);
    c20 = f32x4.add(v128.load(c + (ldc << 1)), c20); c21 = f32x4.add(v128.load(c + (ldc << 1), 16), c21);
    c30 = f32x4.add(v128.load(c + ldc * 3), c30); c31 = f32x4.add(v128.load(c + ldc * 3, 16), c31);
  }
  v128.store(c, c00); v128.store(c, c01, 16);
  v128.store(c + ldc, c10); v128.store(c + ldc, c11, 16);
  v128.store(c + (ldc << 1), c20); v128.store(c + (ldc << 1), c21, 16);
  v128.store(c + ldc * 3, c30); v128.store(c + ldc * 3, c31, 16);
}

/** one row: C[1][8] = init + A[1][K] * panel[K][8] (init and ldp as for kernel4x8; no caller adds to C) */
// @ts-ignore: decorator
@inline export function kernel1x8(a: usize, panel: usize, ldp: usize, K: i32, c: usize, init: usize): void {
  let c0: v128, c1: v128;
  if (init != 0) {
    c0 = v128.load(init); c1 = v128.load(init, 16);
  } else {
    c0 = f32x4.splat(0); c1 = c0;
  }
  let a0 = a;
  let p = panel;
  // counted, not compared with an end address: one at the top of a 4 GiB memory wraps to 0
  for (let kk = 0; kk < K; kk++) {
    const s = v128.load32_splat(a0);
    c0 = fmadd(s, v128.load(p), c0);
    c1 = fmadd(s, v128.load(p, 16), c1);
    a0 += 4;
    p += ldp;
  }
  v128.store(c, c0); v128.store(c, c1, 16);
}

/**
 * one row against four panels side by side: C[1][32] = init + A[1][K] * panels (panel j at
 * panel + j * panelStride, each with row stride 32 bytes). The same operations per element as
 * kernel1x8, but eight independent sums: one row's two chains alone wait on the multiply-add's
 * latency (a decoding step's projection read its weights at about half the speed).
 */
// @ts-ignore: decorator
@inline export function kernel1x32(a: usize, panel: usize, panelStride: usize, K: i32, c: usize, init: usize): void {
  let c0: v128, c1: v128, c2: v128, c3: v128, c4: v128, c5: v128, c6: v128, c7: v128;
  if (init != 0) {
    c0 = v128.load(init); c1 = v128.load(init, 16); c2 = v128.load(init, 32); c3 = v128.load(init, 48);
    c4 = v128.load(init, 64); c5 = v128.load(init, 80); c6 = v128.load(init, 96); c7 = v128.load(init, 112);
  } else {
    c0 = f32x4.splat(0); c1 = c0; c2 = c0; c3 = c0; c4 = c0; c5 = c0; c6 = c0; c7 = c0;
  }
  let a0 = a;
  let p0 = panel;
  const p1 = panelStride, p2 = panelStride << 1, p3 = panelStride * 3;
  for (let kk = 0; kk < K; kk++) {
    const s = v128.load32_splat(a0);
    c0 = fmadd(s, v128.load(p0), c0); c1 = fmadd(s, v128.load(p0, 16), c1);
    c2 = fmadd(s, v128.load(p0 + p1), c2); c3 = fmadd(s, v128.load(p0 + p1, 16), c3);
    c4 = fmadd(s, v128.load(p0 + p2), c4); c5 = fmadd(s, v128.load(p0 + p2, 16), c5);
    c6 = fmadd(s, v128.load(p0 + p3), c6); c7 = fmadd(s, v128.load(p0 + p3, 16), c7);
    a0 += 4;
    p0 += 32;
  }
  v128.store(c, c0); v128.store(c, c1, 16); v128.store(c, c2, 32); v128.store(c, c3, 48);
  v128.store(c, c4, 64); v128.store(c, c5, 80); v128.store(c, c6, 96); v128.store(c, c7, 112);
}
