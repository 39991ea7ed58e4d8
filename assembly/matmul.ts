// Batched matmul: C[bi] = A[bi] (m x k) * B[bi] (k x n, or n x k when transB) + bias (n).
// Pointer ABI: output first, byte pointers, element strides; `scratch` is caller-provided
// memory of matmulScratchBytes(n, k) bytes. Nothing is allocated here.

import { kernel4x8, kernel1x8 } from './simd/gemm';

/** bytes of scratch matmul() needs for these n, k */
export function matmulScratchBytes(n: i32, k: i32): usize {
  const np = <usize>((n + 7) >> 3);
  return np * (<usize>k) * 32 + np * 32 + 4 * 32 + 64;
}

/** Packs B into panels of 8 columns: panel p, row kk at panels + (p*k + kk) * 32 bytes. */
export function matmulPack(panels: usize, B: usize, n: i32, k: i32, transB: bool): void {
  const np = (n + 7) >> 3;
  for (let p = 0; p < np; p++) {
    const c0 = p << 3;
    const dst = panels + (<usize>p) * (<usize>k) * 32;
    const cols = min<i32>(8, n - c0);
    if (!transB) {
      if (cols == 8) {
        for (let kk = 0; kk < k; kk++) {
          const src = B + ((<usize>kk) * (<usize>n) + <usize>c0) * 4;
          v128.store(dst + (<usize>kk) * 32, v128.load(src));
          v128.store(dst + (<usize>kk) * 32, v128.load(src, 16), 16);
        }
      } else {
        for (let kk = 0; kk < k; kk++) {
          const src = B + ((<usize>kk) * (<usize>n) + <usize>c0) * 4;
          const d = dst + (<usize>kk) * 32;
          for (let c = 0; c < 8; c++) {
            store<f32>(d + (<usize>c) * 4, c < cols ? load<f32>(src + (<usize>c) * 4) : 0);
          }
        }
      }
    } else {
      for (let c = 0; c < 8; c++) {
        if (c < cols) {
          const src = B + (<usize>(c0 + c)) * (<usize>k) * 4;
          for (let kk = 0; kk < k; kk++) {
            store<f32>(dst + (<usize>kk) * 32 + (<usize>c) * 4, load<f32>(src + (<usize>kk) * 4));
          }
        } else {
          for (let kk = 0; kk < k; kk++) store<f32>(dst + (<usize>kk) * 32 + (<usize>c) * 4, 0);
        }
      }
    }
  }
}

/** bytes matmulPacked() needs for packed weights of n outputs and k inputs (panels, then a padded bias) */
export function matmulPackedBytes(n: i32, k: i32): usize {
  const np = <usize>((n + 7) >> 3);
  return np * (<usize>k) * 32 + np * 32;
}

/**
 * Packs weights once for matmulPacked(): B as in matmul (transB: [n][k], the nn.Linear layout)
 * and an optional bias, into `dst` (matmulPackedBytes(n, k) bytes, 16-aligned).
 */
export function matmulPrepack(dst: usize, b: usize, bias: usize, n: i32, k: i32, transB: i32): void {
  const np = (n + 7) >> 3;
  matmulPack(dst, b, n, k, transB != 0);
  const biasP = dst + (<usize>np) * (<usize>k) * 32;
  for (let i = 0; i < np * 8; i++) {
    store<f32>(biasP + (<usize>i) * 4, bias != 0 && i < n ? load<f32>(bias + (<usize>i) * 4) : 0);
  }
}

/** C (m x n) = A (m x k) * packed B + packed bias; `tmp` is 128 bytes of scratch (16-aligned). */
export function matmulPacked(out: usize, a: usize, packed: usize, m: i32, n: i32, k: i32, tmp: usize): void {
  const np = (n + 7) >> 3;
  panelsTimes(out, a, packed, packed + (<usize>np) * (<usize>k) * 32, tmp, m, n, k);
}

/** C = A * panels + bias for one matrix: every 8-column panel against every row (4 rows at a time). */
function panelsTimes(C: usize, A: usize, panels: usize, biasP: usize, tmp: usize, m: i32, n: i32, k: i32): void {
  const np = (n + 7) >> 3;
  const lda = (<usize>k) * 4;
  const ldc = (<usize>n) * 4;
  for (let p = 0; p < np; p++) {
    const panel = panels + (<usize>p) * (<usize>k) * 32;
    const init = biasP + (<usize>p) * 32;
    const c0 = p << 3;
    const cols = min<i32>(8, n - c0);
    let r = 0;
    if (cols == 8) {
      for (; r + 4 <= m; r += 4) {
        kernel4x8(A + (<usize>r) * lda, lda, panel, 32, k, C + (<usize>r) * ldc + (<usize>c0) * 4, ldc, init, false);
      }
      for (; r < m; r++) {
        kernel1x8(A + (<usize>r) * lda, panel, 32, k, C + (<usize>r) * ldc + (<usize>c0) * 4, init, false);
      }
    } else {
      for (; r + 4 <= m; r += 4) {
        kernel4x8(A + (<usize>r) * lda, lda, panel, 32, k, tmp, 32, init, false);
        for (let rr = 0; rr < 4; rr++) {
          const dst = C + (<usize>(r + rr)) * ldc + (<usize>c0) * 4;
          for (let c = 0; c < cols; c++) {
            store<f32>(dst + (<usize>c) * 4, load<f32>(tmp + (<usize>(rr * 8 + c)) * 4));
          }
        }
      }
      for (; r < m; r++) {
        kernel1x8(A + (<usize>r) * lda, panel, 32, k, tmp, init, false);
        const dst = C + (<usize>r) * ldc + (<usize>c0) * 4;
        for (let c = 0; c < cols; c++) store<f32>(dst + (<usize>c) * 4, load<f32>(tmp + (<usize>c) * 4));
      }
    }
  }
}

export function matmul(
  out: usize, a: usize, b: usize, bias: usize,
  batch: i32, m: i32, n: i32, k: i32,
  strideA: usize, strideB: usize, transB: i32, scratch: usize
): void {
  const np = (n + 7) >> 3;
  const panels = (scratch + 15) & ~(<usize>15);
  const biasP = panels + (<usize>np) * (<usize>k) * 32;
  const tmp = biasP + (<usize>np) * 32;
  for (let i = 0; i < np * 8; i++) {
    store<f32>(biasP + (<usize>i) * 4, bias != 0 && i < n ? load<f32>(bias + (<usize>i) * 4) : 0);
  }
  const ldc = (<usize>n) * 4;
  for (let bi = 0; bi < batch; bi++) {
    const A = a + (<usize>bi) * strideA * 4;
    const B = b + (<usize>bi) * strideB * 4;
    const C = out + (<usize>bi) * (<usize>m) * ldc;
    if (bi == 0 || strideB != 0) matmulPack(panels, B, n, k, transB != 0);
    panelsTimes(C, A, panels, biasP, tmp, m, n, k);
  }
}
